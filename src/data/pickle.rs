//! The CIFAR-10 python batch allow-list on the restricted pickle interpreter (`crate::pickle`):
//! a dict with `data` (a numpy uint8 array N x 3072) and `labels` (a list of ints).
//!
//! numpy arrays are pickled as calls to numpy functions, which a pickle VM would execute. We
//! execute nothing: the allowed names ([`Global`]) are reproduced in Rust (`_reconstruct` + BUILD
//! for protocols 2-4, `_frombuffer` for protocol 5, `_codecs.encode` for bytes in Python 3's
//! protocol 2, `numpy.dtype`); any other name is refused.

use crate::pickle::{self, Caller, Heap, PickleError, corrupt, latin1_bytes, to_usize};
use std::rc::Rc;

pub(crate) type Value = pickle::Value<Global, Object>;
pub(crate) type Pickled = pickle::Pickled<Global, Object>;

/// What the allow-listed globals build.
#[derive(Clone, Debug)]
pub(crate) enum Object {
    /// A numpy dtype by its `numpy.dtype(...)` name, e.g. `u1`.
    Dtype(String),
    Array(Rc<Array>),
}

#[derive(Debug)]
pub(crate) struct Array {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data: Rc<[u8]>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Global {
    /// `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`: an empty array filled by BUILD.
    Reconstruct,
    NdarrayClass,
    DtypeClass,
    /// `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)` (protocol 5).
    FromBuffer,
    /// `_codecs.encode(str, 'latin1')`: how Python 3's protocol 2 spells `bytes`.
    CodecsEncode,
}

/// Runs the pickle in `data`: its root object and containers.
pub(crate) fn unpickle(data: &[u8]) -> Result<Pickled, String> {
    pickle::unpickle(data, &mut Numpy).map_err(|e| match e {
        PickleError::Forbidden(global) => {
            format!("refusing pickle global {global} (only numpy array globals are allowed)")
        }
        other => other.to_string(),
    })
}

/// No allowed callable takes more (`_frombuffer` takes 4).
const MAX_CALL_ARGS: usize = 8;
/// Far above a CIFAR array's rank; bounds the work one opcode can cause.
const MAX_RANK: usize = 32;

type Built = Result<Value, PickleError>;

struct Numpy;

impl Caller for Numpy {
    type Global = Global;
    type Object = Object;

    fn resolve(&self, module: &str, name: &str) -> Result<Global, PickleError> {
        Ok(match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Global::Reconstruct,
            ("numpy", "ndarray") => Global::NdarrayClass,
            ("numpy", "dtype") => Global::DtypeClass,
            ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::FromBuffer,
            ("_codecs", "encode") => Global::CodecsEncode,
            _ => return Err(PickleError::Forbidden(format!("{module}.{name}"))),
        })
    }

    /// REDUCE: what the allow-listed callables return.
    fn call(&mut self, heap: &mut Heap<Global, Object>, global: Global, args: &Value) -> Built {
        let args = heap.small_tuple(args, "call arguments", MAX_CALL_ARGS)?;
        match (global, args.as_slice()) {
            (Global::Reconstruct, [Value::Global(Global::NdarrayClass), ..]) => {
                Ok(array(String::new(), Vec::new(), Rc::from(Vec::new())))
            }
            // Python 2 pickles spell the dtype name as a (byte) str.
            (Global::DtypeClass, [name, ..]) if name.as_text().is_some() => Ok(Value::Object(Object::Dtype(
                name.as_text().unwrap_or_default().to_string(),
            ))),
            (Global::CodecsEncode, _) => latin1_bytes(&args),
            (Global::FromBuffer, [data, Value::Object(Object::Dtype(dtype)), shape, ..]) => {
                let data = data.as_bytes().ok_or_else(|| corrupt("_frombuffer without a buffer"))?;
                Ok(array(dtype.clone(), dims(heap, shape)?, data))
            }
            (global, _) => Err(corrupt(format!("unexpected arguments for {global:?}"))),
        }
    }

    /// BUILD: `ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata))`; a dtype's
    /// state (byte order etc.) is irrelevant for the one-byte types we accept.
    fn build(&mut self, heap: &Heap<Global, Object>, target: &Value, state: Value) -> Built {
        match target {
            Value::Object(Object::Dtype(_)) => Ok(target.clone()),
            Value::Object(Object::Array(_)) => {
                let state = heap.small_tuple(&state, "ndarray state", 5)?;
                let [_, shape, Value::Object(Object::Dtype(dtype)), fortran, data] = state.as_slice() else {
                    return Err(corrupt(
                        "unsupported ndarray state (expected (version, shape, dtype, fortran, bytes))",
                    ));
                };
                if matches!(fortran, Value::Bool(true)) {
                    return Err(corrupt("Fortran-ordered arrays are not supported"));
                }
                let data = data
                    .as_bytes()
                    .ok_or_else(|| corrupt("ndarray state without raw bytes"))?;
                Ok(array(dtype.clone(), dims(heap, shape)?, data))
            }
            other => Err(corrupt(format!("BUILD on {}", other.describe()))),
        }
    }
}

fn array(dtype: String, shape: Vec<usize>, data: Rc<[u8]>) -> Value {
    Value::Object(Object::Array(Rc::new(Array { dtype, shape, data })))
}

fn dims(heap: &Heap<Global, Object>, shape: &Value) -> Result<Vec<usize>, PickleError> {
    let dims = heap.small_tuple(shape, "array shape", MAX_RANK)?;
    dims.iter().map(|d| to_usize(d, "array dimension")).collect()
}
