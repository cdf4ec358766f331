//! The Einsum executor: runs any `lower::Einsum` from its dims and affine projections
//! alone, knowing nothing of the op it came from.
//!
//! `O[proj_O(x)] += I[proj_I(x)] · W[proj_W(x)]` for every point x of the iteration box.
//! An input or weight index outside its operand's shape reads 0 (that is how padding is
//! expressed); every point is one MAC, so the count is the box volume. An output index
//! outside the output's shape is a malformed Einsum and an error. The mapped executor
//! (tiles moving through a memory hierarchy) will extend this loop, so it stays generic.

use super::tensor::{next_index, Tensor};
use super::CheckError;
use crate::lower::{Einsum, Operand};

fn malformed(e: &Einsum, message: String) -> CheckError {
    CheckError::Einsum {
        einsum: e.name.clone(),
        message,
    }
}

/// Checks an operand's projections against the Einsum's dims and a tensor's size.
fn check_operand(
    e: &Einsum,
    what: &str,
    op: &Operand,
    data_len: Option<usize>,
) -> Result<(), CheckError> {
    if op.proj.len() != op.shape.len() {
        return Err(malformed(
            e,
            format!(
                "{what} has {} axes but {} projections",
                op.shape.len(),
                op.proj.len()
            ),
        ));
    }
    if let Some(&(d, _)) = op
        .proj
        .iter()
        .flat_map(|a| &a.terms)
        .find(|(d, _)| *d >= e.dims.len())
    {
        return Err(malformed(
            e,
            format!(
                "{what} projection names dim #{d}, but the Einsum has {} dims",
                e.dims.len()
            ),
        ));
    }
    if let Some(len) = data_len {
        if len as u64 != op.elements() {
            return Err(malformed(
                e,
                format!(
                    "{what} operand {:?} holds {} elements, the tensor given has {len}",
                    op.shape,
                    op.elements()
                ),
            ));
        }
    }
    Ok(())
}

/// Flat row-major offset of `op`'s element at loop point `point`, or None when the
/// projected index falls outside the operand (padding).
fn locate(op: &Operand, point: &[usize]) -> Option<usize> {
    let mut off = 0usize;
    for (a, &len) in op.proj.iter().zip(&op.shape) {
        let i = a.eval(point);
        if i < 0 || i as usize >= len {
            return None;
        }
        off = off * len + i as usize;
    }
    Some(off)
}

/// Executes `e` on row-major `input` and `weight` data (any shape with the operand's
/// element count). Returns the output in the output operand's shape and the MACs done.
pub fn execute(e: &Einsum, input: &Tensor, weight: &Tensor) -> Result<(Tensor, u64), CheckError> {
    check_operand(e, "input", &e.input, Some(input.len()))?;
    check_operand(e, "weight", &e.weight, Some(weight.len()))?;
    check_operand(e, "output", &e.output, None)?;
    let bounds: Vec<usize> = e.dims.iter().map(|d| d.bound).collect();
    let mut out = Tensor::zeros(&e.output.shape);
    let mut macs = 0u64;
    if bounds.contains(&0) {
        return Ok((out, 0));
    }
    let mut point = vec![0usize; bounds.len()];
    loop {
        macs += 1;
        let o = locate(&e.output, &point).ok_or_else(|| {
            malformed(
                e,
                format!(
                    "output index at loop point {point:?} falls outside {:?}",
                    e.output.shape
                ),
            )
        })?;
        if let (Some(i), Some(w)) = (locate(&e.input, &point), locate(&e.weight, &point)) {
            out.data[o] += input.data[i] * weight.data[w];
        }
        if !next_index(&mut point, &bounds) {
            break;
        }
    }
    Ok((out, macs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::gemm;
    use crate::workload::DType;

    #[test]
    fn gemm_einsum_by_hand() {
        // O[p,k] = Σ_c I[p,c]·W[k,c]: [[1,2],[3,4]] · [[1,0],[1,1]]ᵀ computed by hand.
        let e = gemm("g", 2, 2, 2, DType::Fp32);
        let i = Tensor::from_vec(&[2, 2], vec![1., 2., 3., 4.]).unwrap();
        let w = Tensor::from_vec(&[2, 2], vec![1., 0., 1., 1.]).unwrap();
        let (o, macs) = execute(&e, &i, &w).unwrap();
        assert_eq!(o.data, vec![1., 3., 3., 7.]);
        assert_eq!(macs, 8);
    }

    #[test]
    fn operand_size_mismatch_is_an_error_not_a_panic() {
        let e = gemm("g", 2, 2, 2, DType::Fp32);
        let err = execute(&e, &Tensor::zeros(&[3]), &Tensor::zeros(&[4])).unwrap_err();
        assert!(err.to_string().contains("input"), "{err}");
    }

    #[test]
    fn output_outside_its_shape_is_an_error() {
        let mut e = gemm("g", 2, 2, 2, DType::Fp32);
        e.output.proj[0].offset = 1;
        let err = execute(&e, &Tensor::zeros(&[4]), &Tensor::zeros(&[4])).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }
}
