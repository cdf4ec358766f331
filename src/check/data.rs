//! Seeded, keyed test data: graph inputs, weights, biases, caches and token ids.
//!
//! Every tensor is drawn from its own ChaCha8 stream seeded by `(seed, key)`, where the
//! key names the tensor (`"layer1.0.conv1.weight"`). So the naive executor and the
//! independent GEMM path see bit-identical data without sharing state, the order in
//! which tensors are requested does not matter, and one tensor can be perturbed on
//! purpose (a [`Fault`]) to show that the checker notices.
//!
//! Magnitudes: weights are uniform in ±sqrt(3/fan_in) (unit-variance preserving, so a
//! deep scaled-down network neither blows up nor vanishes), activations and tables in
//! ±1, biases in ±0.5, norm scales in 1 ± 0.25.

use super::tensor::Tensor;
use crate::workload::op::{Conv1d, Conv2d, Moe};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A deliberate error: `delta` added to element `index` of the tensor named `key`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub key: String,
    pub index: usize,
    pub delta: f64,
}

/// The keyed generator.
#[derive(Clone, Debug, PartialEq)]
pub struct DataGen {
    pub seed: u64,
    pub fault: Option<Fault>,
}

/// FNV-1a: a stable (cross-platform, cross-version) hash of the key.
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64 finalizer: mixes seed and key hash so nearby seeds give unrelated streams.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl DataGen {
    pub fn new(seed: u64) -> DataGen {
        DataGen { seed, fault: None }
    }

    /// The same data with one element of one tensor perturbed.
    pub fn with_fault(mut self, key: &str, index: usize, delta: f64) -> DataGen {
        self.fault = Some(Fault {
            key: key.to_string(),
            index,
            delta,
        });
        self
    }

    fn rng(&self, key: &str) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(mix(self.seed ^ mix(fnv1a(key))))
    }

    fn apply_fault(&self, key: &str, t: &mut Tensor) {
        if let Some(f) = &self.fault {
            if f.key == key {
                if let Some(x) = t.data.get_mut(f.index) {
                    *x += f.delta;
                }
            }
        }
    }

    /// Uniform in `center ± half_width`.
    pub fn uniform(&self, key: &str, shape: &[usize], center: f64, half_width: f64) -> Tensor {
        let mut rng = self.rng(key);
        let mut t = Tensor::zeros(shape);
        for x in &mut t.data {
            *x = center + half_width * rng.random_range(-1.0..1.0);
        }
        self.apply_fault(key, &mut t);
        t
    }

    /// Integers in `0..upper` stored as f64 (token ids).
    pub fn ids(&self, key: &str, shape: &[usize], upper: usize) -> Tensor {
        let mut rng = self.rng(key);
        let mut t = Tensor::zeros(shape);
        for x in &mut t.data {
            *x = rng.random_range(0..upper.max(1)) as f64;
        }
        t
    }

    /// A graph input (activations in ±1).
    pub fn input(&self, node: &str, shape: &[usize]) -> Tensor {
        self.uniform(node, shape, 0.0, 1.0)
    }

    /// A weight with fan-in `fan_in`, unit-variance preserving.
    pub fn weight(&self, key: &str, shape: &[usize], fan_in: usize) -> Tensor {
        self.uniform(key, shape, 0.0, (3.0 / fan_in.max(1) as f64).sqrt())
    }

    pub fn bias(&self, key: &str, n: usize) -> Tensor {
        self.uniform(key, &[n], 0.0, 0.5)
    }

    /// Multiplicative norm parameters (gamma, batchnorm scale) around 1.
    pub fn scale(&self, key: &str, n: usize) -> Tensor {
        self.uniform(key, &[n], 1.0, 0.25)
    }

    /// A table of rows read directly (embeddings, class token, KV cache).
    pub fn table(&self, key: &str, shape: &[usize]) -> Tensor {
        self.uniform(key, shape, 0.0, 1.0)
    }
}

/// Conv2d weight `[K, C/groups, R, S]` and optional bias `[K]`, under `{node}.weight|bias`.
pub fn conv2d_params(
    gen: &DataGen,
    node: &str,
    c: &Conv2d,
    cin: usize,
) -> (Tensor, Option<Tensor>) {
    let cg = cin / c.groups.max(1);
    let w = gen.weight(
        &format!("{node}.weight"),
        &[c.out_channels, cg, c.kernel[0], c.kernel[1]],
        cg * c.kernel[0] * c.kernel[1],
    );
    let b = c
        .bias
        .then(|| gen.bias(&format!("{node}.bias"), c.out_channels));
    (w, b)
}

/// Conv1d weight `[K, C/groups, R]` and optional bias `[K]`.
pub fn conv1d_params(
    gen: &DataGen,
    node: &str,
    c: &Conv1d,
    cin: usize,
) -> (Tensor, Option<Tensor>) {
    let cg = cin / c.groups.max(1);
    let w = gen.weight(
        &format!("{node}.weight"),
        &[c.out_channels, cg, c.kernel],
        cg * c.kernel,
    );
    let b = c
        .bias
        .then(|| gen.bias(&format!("{node}.bias"), c.out_channels));
    (w, b)
}

/// Linear weight `[out, in]` (PyTorch layout) under `weight_key`, bias under `{node}.bias`.
///
/// A tied weight is an embedding table, so it is drawn as one (±1) under the table's key.
pub fn linear_params(
    gen: &DataGen,
    node: &str,
    weight_key: &str,
    tied: bool,
    out: usize,
    fan_in: usize,
    bias: bool,
) -> (Tensor, Option<Tensor>) {
    let w = if tied {
        gen.table(weight_key, &[out, fan_in])
    } else {
        gen.weight(weight_key, &[out, fan_in], fan_in)
    };
    let b = bias.then(|| gen.bias(&format!("{node}.bias"), out));
    (w, b)
}

/// The `kv_cache` earlier K and V rows of an attention node, `[B, cache, kv_heads*head_dim]` each.
pub fn kv_cache(
    gen: &DataGen,
    node: &str,
    batch: usize,
    cache: usize,
    width: usize,
) -> (Tensor, Tensor) {
    (
        gen.table(&format!("{node}.k_cache"), &[batch, cache, width]),
        gen.table(&format!("{node}.v_cache"), &[batch, cache, width]),
    )
}

/// Squeeze-excite parameters: fc1 `[reduced, C]` + bias, fc2 `[C, reduced]` + bias.
pub struct SeParams {
    pub w1: Tensor,
    pub b1: Tensor,
    pub w2: Tensor,
    pub b2: Tensor,
}

pub fn se_params(gen: &DataGen, node: &str, channels: usize, reduced: usize) -> SeParams {
    SeParams {
        w1: gen.weight(
            &format!("{node}.fc1.weight"),
            &[reduced, channels],
            channels,
        ),
        b1: gen.bias(&format!("{node}.fc1.bias"), reduced),
        w2: gen.weight(&format!("{node}.fc2.weight"), &[channels, reduced], reduced),
        b2: gen.bias(&format!("{node}.fc2.bias"), channels),
    }
}

/// One expert's FFN: `gate` (gated experts only) and `up` are `[F, D]`, `down` is `[D, F]`.
pub struct Expert {
    pub gate: Option<Tensor>,
    pub up: Tensor,
    pub down: Tensor,
}

/// MoE parameters: router `[E, D]` (no bias) and every expert.
pub struct MoeParams {
    pub router: Tensor,
    pub experts: Vec<Expert>,
}

pub fn moe_params(gen: &DataGen, node: &str, m: &Moe, d: usize) -> MoeParams {
    let f = m.ffn_dim;
    let experts = (0..m.experts)
        .map(|e| Expert {
            gate: m
                .gated
                .then(|| gen.weight(&format!("{node}.e{e}.gate.weight"), &[f, d], d)),
            up: gen.weight(&format!("{node}.e{e}.up.weight"), &[f, d], d),
            down: gen.weight(&format!("{node}.e{e}.down.weight"), &[d, f], f),
        })
        .collect();
    MoeParams {
        router: gen.weight(&format!("{node}.router.weight"), &[m.experts, d], d),
        experts,
    }
}

/// Selective-scan parameters: `A = −exp(u)`, u uniform in ±1 (negative, so the state
/// decays and the scan is stable, as Mamba's `A = −exp(A_log)`), and the skip `D`.
pub fn scan_params(gen: &DataGen, node: &str, di: usize, n: usize) -> (Tensor, Tensor) {
    let mut a = gen.table(&format!("{node}.A_log"), &[di, n]);
    for x in &mut a.data {
        *x = -x.exp();
    }
    (a, gen.table(&format!("{node}.D"), &[di]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_data_other_key_other_data() {
        let g = DataGen::new(7);
        assert_eq!(g.input("x", &[4]), g.input("x", &[4]));
        assert_ne!(g.input("x", &[4]), g.input("y", &[4]));
        assert_ne!(g.input("x", &[4]), DataGen::new(8).input("x", &[4]));
    }

    #[test]
    fn a_fault_changes_one_element_of_one_tensor() {
        let g = DataGen::new(7);
        let f = g.clone().with_fault("x", 2, 1.0);
        let (a, b) = (g.input("x", &[4]), f.input("x", &[4]));
        let changed: Vec<usize> = (0..4).filter(|&i| a.data[i] != b.data[i]).collect();
        assert_eq!(changed, vec![2]);
        assert_eq!(g.input("y", &[4]), f.input("y", &[4]));
    }

    #[test]
    fn ids_stay_in_range() {
        let t = DataGen::new(1).ids("ids", &[100], 5);
        assert!(t
            .data
            .iter()
            .all(|&x| (0.0..5.0).contains(&x) && x.fract() == 0.0));
    }
}
