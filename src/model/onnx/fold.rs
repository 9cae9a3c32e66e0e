//! Constants and the operators on them that are evaluated at load time: the shape arithmetic
//! exporters emit around `Reshape` (Shape, Gather, Unsqueeze, Concat, Cast, ...) and arithmetic
//! on initializers. Shapes of runtime values enter as constants too, with the batch size as an
//! unknown element ([`Data::Int`] `None`): it may be moved around (gathered, concatenated, fed
//! to Reshape) but not computed with.
//!
//! Every function here returns a plain message on failure; the translator adds the node.

/// A tensor known at load time.
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub dims: Vec<usize>,
    pub data: Data,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Every floating type, read as f32 (the precision the network runs in).
    Float(Vec<f32>),
    /// Integers and bools; `None` is the batch size, unknown until run time.
    Int(Vec<Option<i64>>),
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Data::Float(v) => v.len(),
            Data::Int(v) => v.len(),
        }
    }

    /// The elements at `indices`, in that order.
    fn pick(&self, indices: &[usize]) -> Data {
        match self {
            Data::Float(v) => Data::Float(indices.iter().map(|&i| v[i]).collect()),
            Data::Int(v) => Data::Int(indices.iter().map(|&i| v[i]).collect()),
        }
    }
}

impl Constant {
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn scalar_float(value: f32) -> Constant {
        Constant {
            dims: vec![],
            data: Data::Float(vec![value]),
        }
    }

    pub fn ints(dims: Vec<usize>, values: Vec<Option<i64>>) -> Constant {
        Constant {
            dims,
            data: Data::Int(values),
        }
    }

    /// Known integer values (an error if one is the run-time batch size).
    pub fn known_ints(&self) -> Result<Vec<i64>, String> {
        match &self.data {
            Data::Int(v) => v
                .iter()
                .map(|x| x.ok_or_else(|| "depends on the batch size, which is only known at run time".to_string()))
                .collect(),
            Data::Float(_) => Err("is a float tensor where integers are expected".into()),
        }
    }

    /// Values as f64 (integers converted).
    pub fn floats(&self) -> Result<Vec<f64>, String> {
        match &self.data {
            Data::Float(v) => Ok(v.iter().map(|&x| x as f64).collect()),
            Data::Int(_) => Ok(self.known_ints()?.into_iter().map(|x| x as f64).collect()),
        }
    }

    /// The single value of a one-element tensor.
    pub fn scalar(&self) -> Result<f64, String> {
        match self.floats()?.as_slice() {
            [x] => Ok(*x),
            v => Err(format!("expected one value, found {}", v.len())),
        }
    }

    fn with(&self, dims: Vec<usize>, indices: &[usize]) -> Constant {
        Constant {
            dims,
            data: self.data.pick(indices),
        }
    }
}

/// `axis` in `[-rank, rank)` as an index.
pub fn normalise_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// For each element of `out_dims` (row-major), the flat index of the element of an array of
/// `dims` that numpy broadcasting maps to it (`dims` right-aligned, size-1 axes repeated).
fn broadcast_indices(dims: &[usize], out_dims: &[usize]) -> Vec<usize> {
    let offset = out_dims.len() - dims.len();
    let in_strides = strides(dims);
    let total: usize = out_dims.iter().product();
    let mut result = Vec::with_capacity(total);
    let mut index = vec![0usize; out_dims.len()];
    for _ in 0..total {
        let flat = (0..dims.len())
            .map(|a| {
                if dims[a] == 1 {
                    0
                } else {
                    index[a + offset] * in_strides[a]
                }
            })
            .sum();
        result.push(flat);
        for a in (0..out_dims.len()).rev() {
            index[a] += 1;
            if index[a] < out_dims[a] {
                break;
            }
            index[a] = 0;
        }
    }
    result
}

/// The numpy broadcast of two shapes.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let at = |d: &[usize], i: usize| if i + d.len() < rank { 1 } else { d[i + d.len() - rank] };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(format!("shapes {a:?} and {b:?} do not broadcast ({x} against {y})")),
        })
        .collect()
}

/// Elementwise arithmetic between constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

impl Arith {
    pub fn from_op(op: &str) -> Option<Arith> {
        Some(match op {
            "Add" => Arith::Add,
            "Sub" => Arith::Sub,
            "Mul" => Arith::Mul,
            "Div" => Arith::Div,
            _ => return None,
        })
    }

    fn float(self, a: f32, b: f32) -> f32 {
        match self {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
        }
    }

    fn int(self, a: i64, b: i64) -> Result<i64, String> {
        let r = match self {
            Arith::Add => a.checked_add(b),
            Arith::Sub => a.checked_sub(b),
            Arith::Mul => a.checked_mul(b),
            // ONNX integer Div truncates, as C does.
            Arith::Div => a.checked_div(b),
        };
        r.ok_or_else(|| format!("integer {self:?} of {a} and {b} overflows or divides by zero"))
    }
}

/// `a op b` with broadcasting; both float or both integer, as ONNX requires.
pub fn arith(op: Arith, a: &Constant, b: &Constant) -> Result<Constant, String> {
    let dims = broadcast_dims(&a.dims, &b.dims)?;
    let (ia, ib) = (broadcast_indices(&a.dims, &dims), broadcast_indices(&b.dims, &dims));
    let data = match (&a.data, &b.data) {
        (Data::Float(x), Data::Float(y)) => {
            Data::Float(ia.iter().zip(&ib).map(|(&i, &j)| op.float(x[i], y[j])).collect())
        }
        (Data::Int(_), Data::Int(_)) => {
            let (x, y) = (a.known_ints()?, b.known_ints()?);
            let values: Result<Vec<_>, String> = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| op.int(x[i], y[j]).map(Some))
                .collect();
            Data::Int(values?)
        }
        _ => return Err("mixes float and integer operands".into()),
    };
    Ok(Constant { dims, data })
}

/// ONNX `Cast` to element type `to` (floats ↔ integers; the batch size stays unknown).
pub fn cast(c: &Constant, to: i64) -> Result<Constant, String> {
    let float_target = matches!(to, 1 | 10 | 11 | 16);
    let int_target = matches!(to, 2..=7 | 9 | 12 | 13);
    let data = match (&c.data, float_target, int_target) {
        (Data::Float(v), true, _) => Data::Float(v.clone()),
        (Data::Int(v), _, true) => Data::Int(v.clone()),
        (Data::Int(_), true, _) => Data::Float(c.known_ints()?.into_iter().map(|x| x as f32).collect()),
        (Data::Float(v), _, true) => Data::Int(v.iter().map(|&x| Some(x.trunc() as i64)).collect()),
        _ => return Err(format!("cast to element type {to} is not supported")),
    };
    Ok(Constant {
        dims: c.dims.clone(),
        data,
    })
}

/// ONNX `Gather` along `axis` with `indices` (negative indices count from the end).
pub fn gather(data: &Constant, indices: &Constant, axis: i64) -> Result<Constant, String> {
    let axis = normalise_axis(axis, data.dims.len())?;
    let len = data.dims[axis];
    let picks = indices
        .known_ints()?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + len as i64 } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < len)
                .ok_or_else(|| format!("index {i} out of range for axis of length {len}"))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let outer: usize = data.dims[..axis].iter().product();
    let inner: usize = data.dims[axis + 1..].iter().product();
    let mut flat = Vec::with_capacity(outer * picks.len() * inner);
    for o in 0..outer {
        for &p in &picks {
            flat.extend((0..inner).map(|i| (o * len + p) * inner + i));
        }
    }
    let dims = [&data.dims[..axis], &indices.dims[..], &data.dims[axis + 1..]].concat();
    Ok(data.with(dims, &flat))
}

/// ONNX `Unsqueeze`: size-1 axes inserted at `axes` (positions in the output).
pub fn unsqueeze(c: &Constant, axes: &[i64]) -> Result<Constant, String> {
    let rank = c.dims.len() + axes.len();
    let mut positions: Vec<usize> = axes
        .iter()
        .map(|&a| normalise_axis(a, rank))
        .collect::<Result<_, _>>()?;
    positions.sort_unstable();
    positions.dedup();
    if positions.len() != axes.len() {
        return Err(format!("repeated axes {axes:?}"));
    }
    let mut source = c.dims.iter();
    let dims = (0..rank)
        .map(|i| {
            if positions.contains(&i) {
                1
            } else {
                *source.next().unwrap_or(&1)
            }
        })
        .collect();
    Ok(Constant {
        dims,
        data: c.data.clone(),
    })
}

/// ONNX `Squeeze`: removes the listed size-1 axes, or every size-1 axis when none are listed.
pub fn squeeze(c: &Constant, axes: Option<&[i64]>) -> Result<Constant, String> {
    let rank = c.dims.len();
    let drop: Vec<usize> = match axes {
        Some(axes) => axes
            .iter()
            .map(|&a| normalise_axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).filter(|&i| c.dims[i] == 1).collect(),
    };
    if let Some(&bad) = drop.iter().find(|&&a| c.dims[a] != 1) {
        return Err(format!("cannot squeeze axis {bad} of size {}", c.dims[bad]));
    }
    let dims = (0..rank).filter(|i| !drop.contains(i)).map(|i| c.dims[i]).collect();
    Ok(Constant {
        dims,
        data: c.data.clone(),
    })
}

/// ONNX `Concat` along `axis`.
pub fn concat(parts: &[&Constant], axis: i64) -> Result<Constant, String> {
    let first = parts.first().ok_or("concatenates nothing")?;
    let rank = first.dims.len();
    let axis = normalise_axis(axis, rank)?;
    for p in parts {
        let same_other_dims = p.dims.len() == rank && (0..rank).all(|a| a == axis || p.dims[a] == first.dims[a]);
        if !same_other_dims {
            return Err(format!(
                "concatenates shapes {:?} and {:?} along axis {axis}",
                first.dims, p.dims
            ));
        }
        if std::mem::discriminant(&p.data) != std::mem::discriminant(&first.data) {
            return Err("concatenates float and integer tensors".into());
        }
    }
    let outer: usize = first.dims[..axis].iter().product();
    let inner: usize = first.dims[axis + 1..].iter().product();
    let mut dims = first.dims.clone();
    dims[axis] = parts.iter().map(|p| p.dims[axis]).sum();
    let mut data = match first.data {
        Data::Float(_) => Data::Float(Vec::new()),
        Data::Int(_) => Data::Int(Vec::new()),
    };
    for o in 0..outer {
        for p in parts {
            let block = p.dims[axis] * inner;
            let indices: Vec<usize> = (o * block..(o + 1) * block).collect();
            match (&mut data, p.data.pick(&indices)) {
                (Data::Float(acc), Data::Float(more)) => acc.extend(more),
                (Data::Int(acc), Data::Int(more)) => acc.extend(more),
                _ => unreachable!("element kinds checked above"),
            }
        }
    }
    Ok(Constant { dims, data })
}

/// The indices ONNX `Slice` keeps along an axis of length `len` (start/end clamped as the
/// standard says, negative values counting from the end).
pub fn slice_indices(len: usize, start: i64, end: i64, step: i64) -> Result<Vec<usize>, String> {
    if step == 0 {
        return Err("slice step 0".into());
    }
    let n = len as i64;
    let resolve = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (start, end) = (resolve(start), resolve(end));
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, end) = (start.clamp(0, n), end.clamp(0, n));
        while i < end {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    } else {
        let (mut i, end) = (start.clamp(0, n - 1), end.clamp(-1, n - 1));
        while i > end {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    }
    Ok(out)
}

/// One axis of a `Slice`: which axis, and the kept indices.
pub struct SliceAxis {
    pub axis: usize,
    pub keep: Vec<usize>,
}

/// Resolves `Slice`'s starts/ends/axes/steps for a value of shape `dims`.
pub fn slice_axes(
    dims: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<SliceAxis>, String> {
    let count = starts.len();
    let default_axes: Vec<i64> = (0..count as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    let unit_steps = vec![1; count];
    let steps = steps.unwrap_or(&unit_steps);
    if ends.len() != count || axes.len() != count || steps.len() != count {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    (0..count)
        .map(|i| {
            let axis = normalise_axis(axes[i], dims.len())?;
            Ok(SliceAxis {
                axis,
                keep: slice_indices(dims[axis], starts[i], ends[i], steps[i])?,
            })
        })
        .collect()
}

/// ONNX `Slice` of a constant.
pub fn slice(c: &Constant, axes: &[SliceAxis]) -> Result<Constant, String> {
    let mut keep: Vec<Vec<usize>> = c.dims.iter().map(|&d| (0..d).collect()).collect();
    for a in axes {
        keep[a.axis] = a.keep.clone();
    }
    let dims: Vec<usize> = keep.iter().map(Vec::len).collect();
    let in_strides = strides(&c.dims);
    let mut flat = vec![0usize];
    for (axis, kept) in keep.iter().enumerate() {
        let stride = in_strides[axis];
        flat = flat
            .iter()
            .flat_map(|&base| kept.iter().map(move |&k| base + k * stride))
            .collect();
    }
    Ok(c.with(dims, &flat))
}

/// The output dims of ONNX `Reshape` of `numel` elements to `target` (0 copies the input's
/// dimension unless `allowzero`, -1 is inferred).
pub fn reshape_dims(input: &[usize], target: &[i64], allow_zero: bool) -> Result<Vec<usize>, String> {
    let numel: usize = input.iter().product();
    let mut dims = Vec::with_capacity(target.len());
    let mut inferred = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if inferred.is_none() => {
                inferred = Some(i);
                dims.push(1);
            }
            0 if !allow_zero => dims.push(
                *input
                    .get(i)
                    .ok_or_else(|| format!("0 at position {i} copies no dimension"))?,
            ),
            t if t >= 0 => dims.push(t as usize),
            _ => return Err(format!("bad reshape target {target:?}")),
        }
    }
    let known: usize = dims.iter().product();
    if let Some(i) = inferred {
        if known == 0 || !numel.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} to {target:?}"));
        }
        dims[i] = numel / known;
    } else if known != numel {
        return Err(format!("cannot reshape {input:?} ({numel} elements) to {target:?}"));
    }
    Ok(dims)
}

/// ONNX `Reshape` of a constant.
pub fn reshape(c: &Constant, target: &[i64], allow_zero: bool) -> Result<Constant, String> {
    Ok(Constant {
        dims: reshape_dims(&c.dims, target, allow_zero)?,
        data: c.data.clone(),
    })
}

/// ONNX `Shape` (opset 15's `start`/`end` included) of a value whose dims are `dims`, `None`
/// for the batch size.
pub fn shape_of(dims: &[Option<usize>], start: Option<i64>, end: Option<i64>) -> Constant {
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let (s, e) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(rank)));
    let values: Vec<Option<i64>> = dims[s..e.max(s)].iter().map(|d| d.map(|d| d as i64)).collect();
    Constant::ints(vec![values.len()], values)
}

/// ONNX `ConstantOfShape`: `value` (default float 0) repeated over `shape`.
pub fn constant_of_shape(shape: &Constant, value: Option<&Constant>) -> Result<Constant, String> {
    let dims: Vec<usize> = shape
        .known_ints()?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let numel = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= 1 << 24);
    let numel = numel.ok_or_else(|| format!("shape {dims:?} is too large for a folded constant"))?;
    let value = value.cloned().unwrap_or(Constant::scalar_float(0.0));
    if value.numel() != 1 {
        return Err("value must hold one element".into());
    }
    Ok(value.with(dims, &vec![0; numel]))
}

/// ONNX `Transpose` (default: reverse the axes).
pub fn transpose(c: &Constant, perm: Option<&[i64]>) -> Result<Constant, String> {
    let rank = c.dims.len();
    let perm: Vec<usize> = match perm {
        Some(p) => p.iter().map(|&a| normalise_axis(a, rank)).collect::<Result<_, _>>()?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = perm.clone();
    seen.sort_unstable();
    if seen != (0..rank).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of {rank} axes"));
    }
    let dims: Vec<usize> = perm.iter().map(|&a| c.dims[a]).collect();
    let in_strides = strides(&c.dims);
    let mut flat = vec![0usize];
    for (out_axis, &in_axis) in perm.iter().enumerate() {
        let stride = in_strides[in_axis];
        flat = flat
            .iter()
            .flat_map(|&base| (0..dims[out_axis]).map(move |k| base + k * stride))
            .collect();
    }
    Ok(c.with(dims, &flat))
}

/// ONNX `Expand`: broadcast to `shape` (numpy rules, either side may have size 1).
pub fn expand(c: &Constant, shape: &[i64]) -> Result<Constant, String> {
    let shape: Vec<usize> = shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let dims = broadcast_dims(&c.dims, &shape)?;
    if dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .is_none_or(|n| n > 1 << 24)
    {
        return Err(format!("shape {dims:?} is too large for a folded constant"));
    }
    Ok(c.with(dims.clone(), &broadcast_indices(&c.dims, &dims)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(dims: Vec<usize>, v: &[i64]) -> Constant {
        Constant::ints(dims, v.iter().map(|&x| Some(x)).collect())
    }

    #[test]
    fn gather_picks_along_an_axis() {
        let c = ints(vec![2, 3], &[0, 1, 2, 3, 4, 5]);
        let g = gather(&c, &ints(vec![2], &[2, -3]), 1).unwrap();
        assert_eq!(g, ints(vec![2, 2], &[2, 0, 5, 3]));
        let scalar = gather(&ints(vec![4], &[7, 8, 9, 10]), &ints(vec![], &[0]), 0).unwrap();
        assert_eq!(scalar, ints(vec![], &[7]));
        assert!(gather(&c, &ints(vec![1], &[3]), 1).is_err());
    }

    #[test]
    fn shape_arithmetic_keeps_the_batch_unknown() {
        let shape = shape_of(&[None, Some(64), Some(1), Some(1)], None, None);
        let n = unsqueeze(&gather(&shape, &ints(vec![], &[0]), 0).unwrap(), &[0]).unwrap();
        let target = concat(&[&n, &ints(vec![1], &[-1])], 0).unwrap();
        assert_eq!(target, Constant::ints(vec![2], vec![None, Some(-1)]));
        assert!(target.known_ints().is_err());
        assert!(arith(Arith::Mul, &n, &ints(vec![1], &[2])).is_err());
    }

    #[test]
    fn slicing_follows_the_standard_clamping() {
        assert_eq!(slice_indices(5, 0, i64::MAX, 2).unwrap(), vec![0, 2, 4]);
        assert_eq!(slice_indices(5, -1, i64::MIN, -1).unwrap(), vec![4, 3, 2, 1, 0]);
        assert_eq!(slice_indices(5, 1, -1, 1).unwrap(), vec![1, 2, 3]);
        let c = ints(vec![2, 3], &[0, 1, 2, 3, 4, 5]);
        let axes = slice_axes(&c.dims, &[1], &[3], Some(&[-1]), None).unwrap();
        assert_eq!(slice(&c, &axes).unwrap(), ints(vec![2, 2], &[1, 2, 4, 5]));
    }

    #[test]
    fn arithmetic_broadcasts() {
        let a = Constant {
            dims: vec![2, 1],
            data: Data::Float(vec![1.0, 2.0]),
        };
        let b = Constant {
            dims: vec![3],
            data: Data::Float(vec![10.0, 20.0, 30.0]),
        };
        let sum = arith(Arith::Add, &a, &b).unwrap();
        assert_eq!(sum.dims, vec![2, 3]);
        assert_eq!(sum.data, Data::Float(vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]));
        assert!(broadcast_dims(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn transpose_and_expand_move_elements() {
        let c = ints(vec![2, 3], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(transpose(&c, None).unwrap(), ints(vec![3, 2], &[0, 3, 1, 4, 2, 5]));
        assert!(transpose(&c, Some(&[0, 0])).is_err());
        let row = ints(vec![3], &[7, 8, 9]);
        assert_eq!(expand(&row, &[2, 1]).unwrap(), ints(vec![2, 3], &[7, 8, 9, 7, 8, 9]));
    }

    #[test]
    fn reshape_infers_and_copies() {
        assert_eq!(reshape_dims(&[2, 3, 4], &[0, -1], false).unwrap(), vec![2, 12]);
        assert!(reshape_dims(&[2, 3, 4], &[5, -1], false).is_err());
        assert!(reshape_dims(&[2, 3], &[-1, -1], false).is_err());
    }
}
