//! Technology tables (`accelerators/tech/<node>.toml`): default per-access energies
//! and areas for levels and MACs that a template file leaves out.

use serde::Deserialize;

/// A technology node's cost table. Every number carries its source in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tech {
    pub node: String,
    #[serde(default)]
    pub sources: Vec<String>,
    /// MAC energy (pJ) by operand width in bits, e.g. `{ "8" = 0.315, "16" = 1.0 }`.
    pub mac_energy_pj: toml::Table,
    pub mac_area_um2: toml::Table,
    pub dram_energy_pj_per_bit: f64,
    /// SRAM read energy per word: `[[size_bytes, pJ], ...]`, log-log interpolated.
    pub sram_read_pj: Vec<[f64; 2]>,
    /// Write energy as a multiple of read energy.
    pub sram_write_ratio: f64,
    pub sram_area_um2_per_byte: Vec<[f64; 2]>,
    pub regfile_read_pj: f64,
    pub regfile_write_pj: f64,
    pub regfile_area_um2_per_byte: f64,
    pub vector_energy_pj_per_op: f64,
    /// Reference word width the per-word energies above are quoted at.
    pub word_bits: u32,
}

impl Tech {
    fn by_bits(table: &toml::Table, bits: u32) -> Option<f64> {
        table
            .get(&bits.to_string())
            .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))
    }

    pub fn mac_energy(&self, bits: u32) -> Option<f64> {
        Self::by_bits(&self.mac_energy_pj, bits)
    }

    pub fn mac_area(&self, bits: u32) -> Option<f64> {
        Self::by_bits(&self.mac_area_um2, bits)
    }

    /// Scales a per-word figure quoted at the table's width to `bits`.
    fn width_scale(&self, bits: u32) -> f64 {
        bits as f64 / self.word_bits as f64
    }

    pub fn sram_read(&self, bytes: f64, bits: u32) -> f64 {
        loglog(&self.sram_read_pj, bytes) * self.width_scale(bits)
    }

    pub fn sram_area(&self, bytes: f64) -> f64 {
        loglog(&self.sram_area_um2_per_byte, bytes) * bytes
    }

    pub fn dram_word(&self, bits: u32) -> f64 {
        self.dram_energy_pj_per_bit * bits as f64
    }

    pub fn regfile_read(&self, bits: u32) -> f64 {
        self.regfile_read_pj * self.width_scale(bits)
    }

    pub fn regfile_write(&self, bits: u32) -> f64 {
        self.regfile_write_pj * self.width_scale(bits)
    }
}

/// Piecewise power-law interpolation through sorted `(x, y)` points (clamped slopes
/// at the ends), the usual shape of SRAM energy and density versus size.
fn loglog(points: &[[f64; 2]], x: f64) -> f64 {
    match points.len() {
        0 => 0.0,
        1 => points[0][1],
        _ => {
            let i = points
                .windows(2)
                .position(|w| x <= w[1][0])
                .unwrap_or(points.len() - 2);
            let ([x0, y0], [x1, y1]) = (points[i], points[i + 1]);
            let slope = (y1 / y0).ln() / (x1 / x0).ln();
            y0 * (x / x0).powf(slope)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loglog_hits_its_points_and_interpolates_monotonically() {
        let pts = [[384.0, 0.68], [131072.0, 8.09]];
        assert!((super::loglog(&pts, 384.0) - 0.68).abs() < 1e-12);
        assert!((super::loglog(&pts, 131072.0) - 8.09).abs() < 1e-9);
        let mid = super::loglog(&pts, 8192.0);
        assert!(mid > 0.68 && mid < 8.09);
    }
}
