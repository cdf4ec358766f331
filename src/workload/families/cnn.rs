//! Convolutional families, following torchvision's reference definitions so that
//! MAC and parameter counts can be checked against the published model cards.

use super::net::{make_divisible, Net, R};
use super::{Common, Family};
use crate::workload::op::*;
use crate::workload::params::{p, ParamReader};
use crate::workload::Graph;
use petgraph::graph::NodeIndex;

pub const FAMILIES: &[Family] = &[
    Family {
        name: "resnet",
        about: "ResNet (He et al. 2016; torchvision v1.5: stride on the 3x3 of bottlenecks)",
        params: &[
            p(
                "block",
                "\"basic\"",
                "basic (2 convs, ResNet-18/34) | bottleneck (1-3-1, ResNet-50+)",
            ),
            p("depths", "[2, 2, 2, 2]", "blocks per stage"),
            p(
                "widths",
                "[64, 128, 256, 512]",
                "base channels per stage (bottleneck outputs 4x)",
            ),
            p("stem_width", "64", "channels of the 7x7 stem"),
            p("classes", "1000", "classifier outputs"),
            p("image_size", "224", "input height = width"),
        ],
        build: resnet,
    },
    Family {
        name: "vgg",
        about: "VGG (Simonyan & Zisserman 2015): 3x3 conv stages, max-pool, 3 FC layers",
        params: &[
            p(
                "depths",
                "[2, 2, 3, 3, 3]",
                "convs per stage ([2,2,3,3,3] = VGG-16)",
            ),
            p("widths", "[64, 128, 256, 512, 512]", "channels per stage"),
            p("batchnorm", "false", "batchnorm after each conv"),
            p("fc_width", "4096", "hidden FC width"),
            p("classes", "1000", "classifier outputs"),
            p("image_size", "224", "input height = width"),
        ],
        build: vgg,
    },
    Family {
        name: "mobilenet_v2",
        about: "MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks",
        params: &[
            p(
                "width_mult",
                "1.0",
                "channel multiplier (channels rounded to multiples of 8)",
            ),
            p(
                "expansion",
                "6",
                "expansion ratio t of every block but the first",
            ),
            p("depths", "[1, 2, 3, 4, 3, 3, 1]", "blocks per stage"),
            p("kernel", "3", "depthwise kernel size"),
            p("classes", "1000", "classifier outputs"),
            p("image_size", "224", "input height = width"),
        ],
        build: mobilenet_v2,
    },
];

fn resnet(r: &ParamReader, c: &Common) -> R<Graph> {
    let bottleneck = r.choice("block", &["basic", "bottleneck"])? == "bottleneck";
    let depths = r.sizes("depths")?;
    let widths = r.sizes("widths")?;
    if widths.len() != depths.len() {
        return Err(crate::workload::WorkloadError::BadParam {
            key: "widths".into(),
            message: format!(
                "has {} entries but depths has {}; give one width per stage",
                widths.len(),
                depths.len()
            ),
        });
    }
    let size = r.size("image_size")?;
    let mut n = Net::new(c);
    let x = n.input("input", &[c.batch, 3, size, size])?;
    let stem = r.size("stem_width")?;
    let mut y = n.conv_bn(
        "conv1",
        x,
        Conv2d::new(stem, 7, 2, 3),
        Some(Activation::Relu),
    )?;
    y = n.pool("maxpool", y, PoolKind::Max, 3, 2, 1)?;
    let expansion = if bottleneck { 4 } else { 1 };
    let mut in_ch = stem;
    for (s, (&depth, &width)) in depths.iter().zip(&widths).enumerate() {
        for b in 0..depth {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            let name = format!("layer{}.{b}", s + 1);
            let out_ch = width * expansion;
            let identity = if stride != 1 || in_ch != out_ch {
                n.conv_bn(
                    &format!("{name}.downsample"),
                    y,
                    Conv2d::new(out_ch, 1, stride, 0),
                    None,
                )?
            } else {
                y
            };
            let mut t = y;
            if bottleneck {
                t = n.conv_bn(
                    &format!("{name}.conv1"),
                    t,
                    Conv2d::new(width, 1, 1, 0),
                    Some(Activation::Relu),
                )?;
                t = n.conv_bn(
                    &format!("{name}.conv2"),
                    t,
                    Conv2d::new(width, 3, stride, 1),
                    Some(Activation::Relu),
                )?;
                t = n.conv_bn(
                    &format!("{name}.conv3"),
                    t,
                    Conv2d::new(out_ch, 1, 1, 0),
                    None,
                )?;
            } else {
                t = n.conv_bn(
                    &format!("{name}.conv1"),
                    t,
                    Conv2d::new(width, 3, stride, 1),
                    Some(Activation::Relu),
                )?;
                t = n.conv_bn(
                    &format!("{name}.conv2"),
                    t,
                    Conv2d::new(out_ch, 3, 1, 1),
                    None,
                )?;
            }
            let sum = n.add(&format!("{name}.add"), t, identity)?;
            y = n.act(&format!("{name}.relu"), sum, Activation::Relu)?;
            in_ch = out_ch;
        }
    }
    n.classifier(y, r.size("classes")?)?;
    Ok(n.finish())
}

fn vgg(r: &ParamReader, c: &Common) -> R<Graph> {
    let depths = r.sizes("depths")?;
    let widths = r.sizes("widths")?;
    if widths.len() != depths.len() {
        return Err(crate::workload::WorkloadError::BadParam {
            key: "widths".into(),
            message: format!(
                "has {} entries but depths has {}",
                widths.len(),
                depths.len()
            ),
        });
    }
    let bn = r.flag("batchnorm")?;
    let size = r.size("image_size")?;
    let mut n = Net::new(c);
    let mut y = n.input("input", &[c.batch, 3, size, size])?;
    let mut i = 0;
    for (s, (&depth, &width)) in depths.iter().zip(&widths).enumerate() {
        for _ in 0..depth {
            let name = format!("features.{i}");
            y = n.conv(&name, y, Conv2d::new(width, 3, 1, 1).bias(true))?;
            if bn {
                y = n.bn(&format!("{name}.bn"), y)?;
            }
            y = n.act(&format!("{name}.relu"), y, Activation::Relu)?;
            i += 1;
        }
        y = n.pool(&format!("pool{}", s + 1), y, PoolKind::Max, 2, 2, 0)?;
    }
    let fc = r.size("fc_width")?;
    y = n.flatten("flatten", y)?;
    y = n.linear("classifier.0", y, fc, true)?;
    y = n.act("classifier.1", y, Activation::Relu)?;
    y = n.linear("classifier.3", y, fc, true)?;
    y = n.act("classifier.4", y, Activation::Relu)?;
    n.linear("classifier.6", y, r.size("classes")?, true)?;
    Ok(n.finish())
}

/// Inverted residual: 1x1 expand (skipped at t=1) → depthwise k×k → 1x1 project,
/// residual when shape is kept. `se` adds squeeze-excite after the depthwise conv.
#[allow(clippy::too_many_arguments)]
pub fn inverted_residual(
    n: &mut Net,
    name: &str,
    x: NodeIndex,
    hidden: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    act: Activation,
    se: Option<(usize, Activation, Activation)>,
) -> R<NodeIndex> {
    let in_ch = n.shape(x)[1];
    let mut y = x;
    if hidden != in_ch {
        y = n.conv_bn(
            &format!("{name}.expand"),
            y,
            Conv2d::new(hidden, 1, 1, 0),
            Some(act),
        )?;
    }
    y = n.conv_bn(
        &format!("{name}.dw"),
        y,
        Conv2d::new(hidden, kernel, stride, (kernel - 1) / 2).groups(hidden),
        Some(act),
    )?;
    if let Some((reduced, se_act, gate)) = se {
        y = n.op(
            &format!("{name}.se"),
            Op::SqueezeExcite {
                reduced,
                act: se_act,
                gate,
            },
            &[y],
        )?;
    }
    y = n.conv_bn(
        &format!("{name}.project"),
        y,
        Conv2d::new(out_ch, 1, 1, 0),
        None,
    )?;
    if stride == 1 && in_ch == out_ch {
        y = n.add(&format!("{name}.add"), y, x)?;
    }
    Ok(y)
}

fn mobilenet_v2(r: &ParamReader, c: &Common) -> R<Graph> {
    let mult = r.float("width_mult")?;
    let t = r.size("expansion")?;
    let depths = r.sizes("depths")?;
    let kernel = r.size("kernel")?;
    if depths.len() != 7 {
        return Err(crate::workload::WorkloadError::BadParam {
            key: "depths".into(),
            message: format!("MobileNetV2 has 7 stages, got {} entries", depths.len()),
        });
    }
    // (expansion, channels, stride) per stage, from the paper's Table 2.
    let stages = [
        (1, 16, 1),
        (t, 24, 2),
        (t, 32, 2),
        (t, 64, 2),
        (t, 96, 1),
        (t, 160, 2),
        (t, 320, 1),
    ];
    let size = r.size("image_size")?;
    let mut n = Net::new(c);
    let x = n.input("input", &[c.batch, 3, size, size])?;
    let stem = make_divisible(32.0 * mult, 8);
    let mut y = n.conv_bn(
        "features.0",
        x,
        Conv2d::new(stem, 3, 2, 1),
        Some(Activation::Relu6),
    )?;
    let mut idx = 1;
    for (&(te, ch, s), &depth) in stages.iter().zip(&depths) {
        let out_ch = make_divisible(ch as f64 * mult, 8);
        for b in 0..depth {
            let stride = if b == 0 { s } else { 1 };
            let hidden = n.shape(y)[1] * te;
            y = inverted_residual(
                &mut n,
                &format!("features.{idx}"),
                y,
                hidden,
                out_ch,
                kernel,
                stride,
                Activation::Relu6,
                None,
            )?;
            idx += 1;
        }
    }
    let last = make_divisible(1280.0 * mult.max(1.0), 8);
    y = n.conv_bn(
        &format!("features.{idx}"),
        y,
        Conv2d::new(last, 1, 1, 0),
        Some(Activation::Relu6),
    )?;
    n.classifier(y, r.size("classes")?)?;
    Ok(n.finish())
}
