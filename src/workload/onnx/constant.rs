//! Tensors known at import time: initializers, `Constant` node values, and the
//! results of folding shape arithmetic (`Shape → Gather → Unsqueeze → Concat →
//! Reshape` chains that exporters emit for dynamic reshapes).
//!
//! Weights are only needed for their dimensions, so their values are decoded only
//! when small; shape tensors, clip bounds and pattern constants are always small.

use super::proto::{data_type, TensorProto};
use std::rc::Rc;

/// Tensors with more elements than this keep only their dimensions: nothing the
/// importer reads by value (shapes, axes, scalars) is anywhere near this large.
const DECODE_LIMIT: usize = 4096;

/// A constant tensor. `values` is `None` for large or externally stored tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstTensor {
    pub dims: Vec<usize>,
    /// `TensorProto.DataType` of the elements.
    pub data_type: i32,
    pub values: Option<Vec<f64>>,
}

pub type Const = Rc<ConstTensor>;

impl ConstTensor {
    pub fn new(dims: Vec<usize>, data_type: i32, values: Vec<f64>) -> Self {
        ConstTensor {
            dims,
            data_type,
            values: Some(values),
        }
    }

    /// A 1-D int64 tensor (shapes, axes).
    pub fn ints(values: &[i64]) -> Self {
        Self::new(
            vec![values.len()],
            data_type::INT64,
            values.iter().map(|&v| v as f64).collect(),
        )
    }

    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_float(&self) -> bool {
        matches!(
            self.data_type,
            data_type::FLOAT | data_type::FLOAT16 | data_type::BFLOAT16 | data_type::DOUBLE
        )
    }

    /// `dims` filled with `value` (ONNX `ConstantOfShape`); only small fills keep values.
    pub fn filled(dims: Vec<usize>, data_type: i32, value: f64) -> Result<Self, String> {
        let elements = checked_elements(&dims)
            .ok_or_else(|| format!("dimensions {dims:?} are implausibly large"))?;
        let values = (elements <= DECODE_LIMIT).then(|| vec![value; elements]);
        Ok(ConstTensor {
            dims,
            data_type,
            values,
        })
    }

    /// The values, or why they are not available.
    pub fn values(&self, what: &str) -> Result<&[f64], String> {
        self.values.as_deref().ok_or_else(|| {
            format!(
                "{what} must be a small constant stored in the model, but its values are {}",
                if self.elements() > DECODE_LIMIT {
                    "too large to be a shape or scalar"
                } else {
                    "stored outside the file (external data)"
                }
            )
        })
    }

    /// The values as integers (shape and axis tensors).
    pub fn int_values(&self, what: &str) -> Result<Vec<i64>, String> {
        Ok(self.values(what)?.iter().map(|&v| v as i64).collect())
    }

    /// The single value of a one-element tensor.
    pub fn scalar(&self, what: &str) -> Result<f64, String> {
        match self.values(what)? {
            [v] => Ok(*v),
            vs => Err(format!("{what} must hold one value, it holds {}", vs.len())),
        }
    }

    /// Same values, new dimensions (reshape, flatten, (un)squeeze of a constant).
    pub fn with_dims(&self, dims: Vec<usize>) -> Self {
        ConstTensor {
            dims,
            ..self.clone()
        }
    }

    /// Decodes a `TensorProto`, checking that its stored data matches its dimensions.
    pub fn from_proto(t: &TensorProto) -> Result<Self, String> {
        let dims = t
            .dims
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| format!("tensor '{}' has a negative dimension {d}", t.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let elements = checked_elements(&dims).ok_or_else(|| {
            format!(
                "tensor '{}' dimensions {dims:?} are implausibly large",
                t.name
            )
        })?;
        let values = if t.data_location == 1 {
            None
        } else {
            decode(t, elements)?
        };
        Ok(ConstTensor {
            dims,
            data_type: t.data_type,
            values,
        })
    }
}

/// Element count, if it stays within the importer's tensor size limit.
fn checked_elements(dims: &[usize]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&e| e as u64 <= super::MAX_TENSOR_ELEMENTS as u64)
}

/// Bytes per element of the fixed-width types, as laid out in `raw_data`.
fn elem_size(data_type: i32) -> Option<usize> {
    Some(match data_type {
        data_type::UINT8 | data_type::INT8 | data_type::BOOL => 1,
        data_type::UINT16 | data_type::INT16 | data_type::FLOAT16 | data_type::BFLOAT16 => 2,
        data_type::FLOAT | data_type::INT32 | data_type::UINT32 => 4,
        data_type::INT64 | data_type::DOUBLE | data_type::UINT64 => 8,
        _ => return None,
    })
}

/// Values of a tensor with `elements` elements: `Ok(None)` when too large to be worth
/// decoding or of a type coex never reads by value (strings, complex).
fn decode(t: &TensorProto, elements: usize) -> Result<Option<Vec<f64>>, String> {
    let mismatch = |held: usize| {
        format!(
            "tensor '{}' holds {held} values but its dimensions {:?} need {elements}; the file is corrupt",
            t.name, t.dims
        )
    };
    if !t.raw_data.is_empty() {
        let Some(size) = elem_size(t.data_type) else {
            return Ok(None);
        };
        if t.raw_data.len() != elements * size {
            return Err(mismatch(t.raw_data.len() / size));
        }
        if elements > DECODE_LIMIT {
            return Ok(None);
        }
        return Ok(Some(
            t.raw_data
                .chunks_exact(size)
                .map(|b| from_le(t.data_type, b))
                .collect(),
        ));
    }
    let typed: Option<Vec<f64>> = match t.data_type {
        data_type::FLOAT => Some(t.float_data.iter().map(|&v| f64::from(v)).collect()),
        data_type::DOUBLE => Some(t.double_data.clone()),
        data_type::INT64 => Some(t.int64_data.iter().map(|&v| v as f64).collect()),
        data_type::UINT32 | data_type::UINT64 => {
            Some(t.uint64_data.iter().map(|&v| v as f64).collect())
        }
        data_type::FLOAT16 => Some(
            t.int32_data
                .iter()
                .map(|&v| f64::from(f16_to_f32(v as u16)))
                .collect(),
        ),
        data_type::BFLOAT16 => Some(
            t.int32_data
                .iter()
                .map(|&v| f64::from(bf16_to_f32(v as u16)))
                .collect(),
        ),
        data_type::INT32
        | data_type::INT16
        | data_type::INT8
        | data_type::UINT16
        | data_type::UINT8
        | data_type::BOOL => Some(t.int32_data.iter().map(|&v| f64::from(v)).collect()),
        _ => None,
    };
    match typed {
        Some(v) if v.len() != elements => Err(mismatch(v.len())),
        Some(v) if elements > DECODE_LIMIT => {
            drop(v);
            Ok(None)
        }
        other => Ok(other),
    }
}

/// One little-endian element of `raw_data` (length already checked by the caller).
fn from_le(data_type: i32, b: &[u8]) -> f64 {
    let u16_at = || u16::from_le_bytes([b[0], b[1]]);
    let u32_at = || u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let u64_at = || u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    match data_type {
        data_type::UINT8 | data_type::BOOL => f64::from(b[0]),
        data_type::INT8 => f64::from(b[0] as i8),
        data_type::UINT16 => f64::from(u16_at()),
        data_type::INT16 => f64::from(u16_at() as i16),
        data_type::FLOAT16 => f64::from(f16_to_f32(u16_at())),
        data_type::BFLOAT16 => f64::from(bf16_to_f32(u16_at())),
        data_type::FLOAT => f64::from(f32::from_bits(u32_at())),
        data_type::INT32 => f64::from(u32_at() as i32),
        data_type::UINT32 => f64::from(u32_at()),
        data_type::INT64 => u64_at() as i64 as f64,
        data_type::UINT64 => u64_at() as f64,
        data_type::DOUBLE => f64::from_bits(u64_at()),
        _ => f64::NAN,
    }
}

fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// IEEE half to single precision (subnormals, infinities and NaN included).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f32::from(bits & 0x3ff);
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// Element-wise arithmetic on two small constants (shape arithmetic). Supports equal
/// shapes and a one-element operand on either side, which is all shape code needs.
pub fn arith(op: &str, a: &ConstTensor, b: &ConstTensor) -> Result<ConstTensor, String> {
    let (va, vb) = (a.values("left operand")?, b.values("right operand")?);
    let ints = !a.is_float() && !b.is_float();
    let f = |x: f64, y: f64| match op {
        "Add" => x + y,
        "Sub" => x - y,
        "Mul" => x * y,
        _ if ints => (x / y).trunc(),
        _ => x / y,
    };
    let (dims, values) = if va.len() == vb.len() {
        (
            a.dims.clone(),
            va.iter().zip(vb).map(|(&x, &y)| f(x, y)).collect(),
        )
    } else if vb.len() == 1 {
        (a.dims.clone(), va.iter().map(|&x| f(x, vb[0])).collect())
    } else if va.len() == 1 {
        (b.dims.clone(), vb.iter().map(|&y| f(va[0], y)).collect())
    } else {
        return Err(format!(
            "constant {op} of shapes {:?} and {:?}: only equal shapes or a scalar operand fold",
            a.dims, b.dims
        ));
    };
    Ok(ConstTensor::new(dims, a.data_type, values))
}

/// `Gather` of constants along `axis` (picking entries of a shape vector).
pub fn gather(
    data: &ConstTensor,
    indices: &ConstTensor,
    axis: usize,
) -> Result<ConstTensor, String> {
    let v = data.values("Gather data")?;
    let idx = indices.int_values("Gather indices")?;
    let extent = *data.dims.get(axis).ok_or("Gather axis out of range")?;
    let outer: usize = data.dims[..axis].iter().product();
    let inner: usize = data.dims[axis + 1..].iter().product();
    let mut values = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in &idx {
            let i = if i < 0 { i + extent as i64 } else { i };
            if i < 0 || i as usize >= extent {
                return Err(format!("Gather index {i} out of range for extent {extent}"));
            }
            let start = (o * extent + i as usize) * inner;
            values.extend_from_slice(&v[start..start + inner]);
        }
    }
    let mut dims = data.dims[..axis].to_vec();
    dims.extend_from_slice(&indices.dims);
    dims.extend_from_slice(&data.dims[axis + 1..]);
    Ok(ConstTensor::new(dims, data.data_type, values))
}

/// `Concat` of 1-D constants (assembling a shape vector).
pub fn concat(parts: &[Const]) -> Result<ConstTensor, String> {
    let mut values = Vec::new();
    for p in parts {
        if p.dims.len() != 1 {
            return Err(format!(
                "only 1-D constants concatenate at import time, got dims {:?}",
                p.dims
            ));
        }
        values.extend_from_slice(p.values("Concat input")?);
    }
    let data_type = parts
        .first()
        .map(|p| p.data_type)
        .unwrap_or(data_type::INT64);
    Ok(ConstTensor::new(vec![values.len()], data_type, values))
}

/// `Slice` of a 1-D constant with step 1 (taking part of a shape vector).
pub fn slice1d(data: &ConstTensor, start: i64, end: i64) -> Result<ConstTensor, String> {
    if data.dims.len() != 1 {
        return Err(format!(
            "only 1-D constants slice at import time, got dims {:?}",
            data.dims
        ));
    }
    let v = data.values("Slice data")?;
    let (s, e) = clamp_range(start, end, v.len());
    Ok(ConstTensor::new(
        vec![e - s],
        data.data_type,
        v[s..e].to_vec(),
    ))
}

/// `Transpose` of a constant: dimensions permuted, and values too when held (a
/// stored weight transposed in the graph needs only its new dimensions).
pub fn transpose(c: &ConstTensor, perm: &[usize]) -> Result<ConstTensor, String> {
    let mut seen = perm.to_vec();
    seen.sort_unstable();
    if seen != (0..c.dims.len()).collect::<Vec<_>>() {
        return Err(format!(
            "perm {perm:?} is not a permutation of the axes of {:?}",
            c.dims
        ));
    }
    let dims: Vec<usize> = perm.iter().map(|&p| c.dims[p]).collect();
    let values = c.values.as_ref().map(|v| {
        // Row-major strides of the input, visited in output order.
        let mut strides = vec![1; c.dims.len()];
        for i in (0..c.dims.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * c.dims[i + 1];
        }
        let mut out = Vec::with_capacity(v.len());
        let mut index = vec![0; dims.len()];
        for _ in 0..v.len() {
            let at: usize = index.iter().zip(perm).map(|(&i, &p)| i * strides[p]).sum();
            out.push(v[at]);
            for axis in (0..dims.len()).rev() {
                index[axis] += 1;
                if index[axis] < dims[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        out
    });
    Ok(ConstTensor {
        dims,
        data_type: c.data_type,
        values,
    })
}

/// ONNX `Slice`/`Shape` index clamping: negatives count from the end, then clamp to
/// `0..=len`; an empty range comes out as `start == end`.
pub fn clamp_range(start: i64, end: i64, len: usize) -> (usize, usize) {
    let n = len as i64;
    let fix = |i: i64| (if i < 0 { i.saturating_add(n) } else { i }).clamp(0, n) as usize;
    let (s, e) = (fix(start), fix(end));
    (s, e.max(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(dims: &[i64], data_type: i32, raw_data: Vec<u8>) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type,
            raw_data,
            ..Default::default()
        }
    }

    #[test]
    fn raw_and_typed_data_decode_alike() {
        let bytes: Vec<u8> = [1i64, -1, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = ConstTensor::from_proto(&raw(&[3], data_type::INT64, bytes)).unwrap();
        let b = ConstTensor::from_proto(&TensorProto {
            dims: vec![3],
            data_type: data_type::INT64,
            int64_data: vec![1, -1, 0],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.int_values("x").unwrap(), vec![1, -1, 0]);
    }

    #[test]
    fn half_precision_converts() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x4600), 6.0);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn short_data_is_reported_not_read() {
        let e = ConstTensor::from_proto(&raw(&[4], data_type::FLOAT, vec![0; 8])).unwrap_err();
        assert!(e.contains("holds 2 values") && e.contains("need 4"), "{e}");
        let e = ConstTensor::from_proto(&raw(&[-2], data_type::FLOAT, vec![])).unwrap_err();
        assert!(e.contains("negative"), "{e}");
    }

    #[test]
    fn shape_arithmetic_folds() {
        let shape = ConstTensor::ints(&[2, 8, 16]);
        let b = gather(
            &shape,
            &ConstTensor::new(vec![], data_type::INT64, vec![0.0]),
            0,
        )
        .unwrap();
        assert_eq!(
            (b.dims.clone(), b.int_values("").unwrap()),
            (vec![], vec![2])
        );
        let tail = slice1d(&shape, 1, i64::MAX).unwrap();
        assert_eq!(tail.int_values("").unwrap(), vec![8, 16]);
        let halves = arith("Div", &tail, &ConstTensor::ints(&[2])).unwrap();
        assert_eq!(halves.int_values("").unwrap(), vec![4, 8]);
        let joined = concat(&[Rc::new(ConstTensor::ints(&[2])), Rc::new(halves)]).unwrap();
        assert_eq!(joined.int_values("").unwrap(), vec![2, 4, 8]);
    }

    #[test]
    fn transpose_permutes_values() {
        let m = ConstTensor::new(
            vec![2, 3],
            data_type::FLOAT,
            (0..6).map(f64::from).collect(),
        );
        let t = transpose(&m, &[1, 0]).unwrap();
        assert_eq!(t.dims, [3, 2]);
        assert_eq!(t.values.unwrap(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert!(transpose(&m, &[0, 0]).is_err());
    }
}
