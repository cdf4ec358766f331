//! FPGA parameters `coex calibrate` fits: the clock the design closed timing at
//! (`device.clock_mhz`: every cycle count turns into time through it), the fraction of
//! peak DRAM bandwidth the engine's DMA sustains (`device.offchip_efficiency`), static
//! power, the MAC energy at the engine's precision and the DRAM energy per byte.
//! Bounds keep them physical: a clock in [1, 2000] MHz, an efficiency in (0, 1],
//! powers and energies ≥ 0. Latency rows identify the clock and the DRAM efficiency
//! (compute-bound and memory-bound layers respectively); power or energy rows the
//! energies.

use super::fit::Bounds;
use super::{Device, Param};
use crate::arch::fpga::Fpga;

fn fpga(d: &Device) -> Option<&Fpga> {
    match d {
        Device::Fpga(f) => Some(f),
        _ => None,
    }
}

fn param(key: String, bounds: Bounds, get: fn(&Fpga) -> f64, set: fn(&mut Fpga, f64)) -> Param {
    Param {
        key,
        bounds,
        get: Box::new(move |d| fpga(d).map_or(f64::NAN, get)),
        set: Box::new(move |d, v| {
            if let Device::Fpga(f) = d {
                set(f, v)
            }
        }),
    }
}

/// Every fittable FPGA parameter of `f`.
pub fn params(f: &Fpga) -> Vec<Param> {
    let nonneg = |scale: f64| Bounds {
        lo: 0.0,
        hi: 1e4,
        scale,
    };
    vec![
        param(
            "device.clock_mhz".into(),
            Bounds {
                lo: 1.0,
                hi: 2000.0,
                scale: 10.0,
            },
            |f| f.device.clock_mhz,
            |f, v| f.device.clock_mhz = v,
        ),
        param(
            "device.offchip_efficiency".into(),
            Bounds {
                lo: 1e-3,
                hi: 1.0,
                scale: 0.1,
            },
            |f| f.device.offchip_efficiency,
            |f, v| f.device.offchip_efficiency = v,
        ),
        param(
            "device.static_power_w".into(),
            nonneg(1.0),
            |f| f.device.static_power_w,
            |f, v| f.device.static_power_w = v,
        ),
        param(
            format!("precision.{}.mac_energy_pj", f.precision.name),
            nonneg(1.0),
            |f| f.precision.mac_energy_pj,
            |f, v| f.precision.mac_energy_pj = v,
        ),
        param(
            "energy.dram_pj_per_byte".into(),
            nonneg(10.0),
            |f| f.common.dram_pj_per_byte,
            |f, v| f.common.dram_pj_per_byte = v,
        ),
    ]
}

/// Fitted when `--params` is not given: the achieved clock and DRAM efficiency
/// (latency), static power and the MAC energy (power).
pub fn default_params(f: &Fpga) -> String {
    format!(
        "device.clock_mhz,device.offchip_efficiency,device.static_power_w,precision.{}.mac_energy_pj",
        f.precision.name
    )
}
