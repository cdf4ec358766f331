//! MobileNetV3 and EfficientNet: inverted-residual (MBConv) networks with squeeze-excite.
//!
//! Both follow torchvision's definitions (layer tables, channel rounding, where SE sits
//! and how wide it is), because torchvision's model cards are the published MAC and
//! parameter counts the tests hold these builders to.

use super::cnn::inverted_residual;
use super::net::{make_divisible, Net, R};
use super::{Common, Family};
use crate::workload::op::*;
use crate::workload::params::{p, ParamReader};
use crate::workload::{Graph, WorkloadError};

pub const FAMILIES: &[Family] = &[
    Family {
        name: "mobilenet_v3",
        about: "MobileNetV3 (Howard et al. 2019), torchvision definition: inverted residuals, \
                SE with hardsigmoid gate, hardswish",
        params: &[
            p("variant", "\"large\"", "large | small (the paper's Tables 1 and 2)"),
            p(
                "width_mult",
                "1.0",
                "channel multiplier (channels rounded to multiples of 8)",
            ),
            p("classes", "1000", "classifier outputs"),
            p("image_size", "224", "input height = width"),
        ],
        build: mobilenet_v3,
    },
    Family {
        name: "efficientnet",
        about: "EfficientNet (Tan & Le 2019), torchvision definition: MBConv with SE, SiLU; \
                B0 at width_mult = depth_mult = 1",
        params: &[
            p(
                "width_mult",
                "1.0",
                "channel multiplier (B0 1.0, B1 1.0, B2 1.1, B3 1.2, B4 1.4, B5 1.6, B6 1.8, B7 2.0)",
            ),
            p(
                "depth_mult",
                "1.0",
                "layer multiplier: a stage of n layers gets ceil(n * depth_mult)",
            ),
            p("classes", "1000", "classifier outputs"),
            p(
                "image_size",
                "224",
                "input height = width (B0 224 ... B7 600)",
            ),
        ],
        build: efficientnet,
    },
];

/// One row of MobileNetV3's block tables (torchvision's `bneck_conf`, whose input
/// channels are implied by the row before).
struct Bneck {
    kernel: usize,
    expanded: usize,
    out: usize,
    se: bool,
    /// Hardswish ("HS") rather than ReLU ("RE").
    hs: bool,
    stride: usize,
}

const fn b(kernel: usize, expanded: usize, out: usize, se: bool, hs: bool, stride: usize) -> Bneck {
    Bneck {
        kernel,
        expanded,
        out,
        se,
        hs,
        stride,
    }
}

/// MobileNetV3-Large, the paper's Table 1 as torchvision writes it.
const V3_LARGE: [Bneck; 15] = [
    b(3, 16, 16, false, false, 1),
    b(3, 64, 24, false, false, 2),
    b(3, 72, 24, false, false, 1),
    b(5, 72, 40, true, false, 2),
    b(5, 120, 40, true, false, 1),
    b(5, 120, 40, true, false, 1),
    b(3, 240, 80, false, true, 2),
    b(3, 200, 80, false, true, 1),
    b(3, 184, 80, false, true, 1),
    b(3, 184, 80, false, true, 1),
    b(3, 480, 112, true, true, 1),
    b(3, 672, 112, true, true, 1),
    b(5, 672, 160, true, true, 2),
    b(5, 960, 160, true, true, 1),
    b(5, 960, 160, true, true, 1),
];

/// MobileNetV3-Small, the paper's Table 2 as torchvision writes it.
const V3_SMALL: [Bneck; 11] = [
    b(3, 16, 16, true, false, 2),
    b(3, 72, 24, false, false, 2),
    b(3, 88, 24, false, false, 1),
    b(5, 96, 40, true, true, 2),
    b(5, 240, 40, true, true, 1),
    b(5, 240, 40, true, true, 1),
    b(5, 120, 48, true, true, 1),
    b(5, 144, 48, true, true, 1),
    b(5, 288, 96, true, true, 2),
    b(5, 576, 96, true, true, 1),
    b(5, 576, 96, true, true, 1),
];

/// The stem width (the first block's input channels) of both MobileNetV3 variants.
const V3_STEM: usize = 16;

fn mobilenet_v3(r: &ParamReader, c: &Common) -> R<Graph> {
    let (table, hidden_fc): (&[Bneck], usize) =
        match r.choice("variant", &["large", "small"])?.as_str() {
            "large" => (&V3_LARGE, 1280),
            _ => (&V3_SMALL, 1024),
        };
    let mult = r.float("width_mult")?;
    let ch = |v: usize| make_divisible(v as f64 * mult, 8);
    let size = r.size("image_size")?;
    let mut n = Net::new(c);
    let x = n.input("input", &[c.batch, 3, size, size])?;
    let stem = Conv2d::new(ch(V3_STEM), 3, 2, 1);
    let mut y = n.conv_bn("features.0", x, stem, Some(Activation::Hardswish))?;
    for (i, row) in table.iter().enumerate() {
        let act = if row.hs {
            Activation::Hardswish
        } else {
            Activation::Relu
        };
        let hidden = ch(row.expanded);
        // torchvision: squeeze = make_divisible(expanded // 4, 8), ReLU inside, hardsigmoid gate.
        let se = row.se.then(|| {
            (
                make_divisible((hidden / 4) as f64, 8),
                Activation::Relu,
                Activation::Hardsigmoid,
            )
        });
        let name = format!("features.{}", i + 1);
        y = inverted_residual(
            &mut n,
            &name,
            y,
            hidden,
            ch(row.out),
            row.kernel,
            row.stride,
            act,
            se,
        )?;
    }
    // The last conv widens 6x; torchvision scales the classifier's hidden FC by width_mult too.
    let last = 6 * n.shape(y)[1];
    let name = format!("features.{}", table.len() + 1);
    y = n.conv_bn(
        &name,
        y,
        Conv2d::new(last, 1, 1, 0),
        Some(Activation::Hardswish),
    )?;
    y = n.global_pool("avgpool", y)?;
    y = n.flatten("flatten", y)?;
    y = n.linear("classifier.0", y, ch(hidden_fc), true)?;
    y = n.act("classifier.1", y, Activation::Hardswish)?;
    n.linear("classifier.3", y, r.size("classes")?, true)?;
    Ok(n.finish())
}

/// EfficientNet-B0 stages (the paper's Table 1, torchvision's `_efficientnet_conf`):
/// (expand ratio, kernel, stride, output channels, layers).
const B0_STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];

/// Stem width of B0 before width scaling.
const B0_STEM: usize = 32;

/// Layers of a stage after depth scaling, as torchvision rounds them (up).
fn scaled_layers(layers: usize, depth_mult: f64) -> usize {
    (layers as f64 * depth_mult).ceil() as usize
}

fn efficientnet(r: &ParamReader, c: &Common) -> R<Graph> {
    let width = r.float("width_mult")?;
    let depth = r.float("depth_mult")?;
    for (key, v) in [("width_mult", width), ("depth_mult", depth)] {
        if v <= 0.0 {
            // depth 0 would silently drop every stage; width 0 rounds every layer to 8 channels.
            return Err(WorkloadError::BadParam {
                key: key.into(),
                message: format!("must be > 0, got {v} ({})", r.context()),
            });
        }
    }
    let ch = |v: usize| make_divisible(v as f64 * width, 8);
    let size = r.size("image_size")?;
    let mut n = Net::new(c);
    let x = n.input("input", &[c.batch, 3, size, size])?;
    let stem = Conv2d::new(ch(B0_STEM), 3, 2, 1);
    let mut y = n.conv_bn("features.0", x, stem, Some(Activation::Silu))?;
    for (s, &(expand, kernel, stride, out, layers)) in B0_STAGES.iter().enumerate() {
        for i in 0..scaled_layers(layers, depth) {
            let in_ch = n.shape(y)[1];
            let hidden = make_divisible((in_ch * expand) as f64, 8);
            // The squeeze width follows the block's input, not its expanded width.
            let se = Some(((in_ch / 4).max(1), Activation::Silu, Activation::Sigmoid));
            let stride = if i == 0 { stride } else { 1 };
            let name = format!("features.{}.{i}", s + 1);
            y = inverted_residual(
                &mut n,
                &name,
                y,
                hidden,
                ch(out),
                kernel,
                stride,
                Activation::Silu,
                se,
            )?;
        }
    }
    // Head: 4x the last stage's channels (1280 for B0), as torchvision computes it.
    let head = 4 * n.shape(y)[1];
    let name = format!("features.{}", B0_STAGES.len() + 1);
    y = n.conv_bn(&name, y, Conv2d::new(head, 1, 1, 0), Some(Activation::Silu))?;
    n.classifier(y, r.size("classes")?)?;
    Ok(n.finish())
}

#[cfg(test)]
mod tests {
    use super::super::{build, Common};
    use crate::report::inspect;
    use toml::Table;

    fn counts(family: &str, params: &str) -> (u64, u64) {
        let t: Table = toml::from_str(params).unwrap();
        let g = build(family, t, &Common::default()).unwrap();
        let ins = inspect(&g).unwrap();
        (ins.total.macs, ins.total.params)
    }

    #[test]
    fn mobilenet_v3_params_match_torchvision_exactly() {
        // torchvision mobilenet_v3_large / _small: sum of p.numel() over parameters.
        assert_eq!(counts("mobilenet_v3", "").1, 5_483_032);
        assert_eq!(counts("mobilenet_v3", "variant = \"small\"").1, 2_542_856);
    }

    #[test]
    fn efficientnet_params_match_torchvision_exactly() {
        // torchvision efficientnet_b0 and efficientnet_b1 (width 1.0, depth 1.1, 240 px).
        assert_eq!(counts("efficientnet", "").1, 5_288_548);
        let b1 = counts("efficientnet", "depth_mult = 1.1\nimage_size = 240");
        assert_eq!(b1.1, 7_794_184);
    }

    #[test]
    fn efficientnet_rejects_zero_depth() {
        let t: Table = toml::from_str("depth_mult = 0.0").unwrap();
        let e = build("efficientnet", t, &Common::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("depth_mult") && e.contains("> 0"), "{e}");
    }
}
