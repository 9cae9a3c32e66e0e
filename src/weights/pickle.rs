//! The PyTorch state-dict allow-list on the restricted pickle interpreter (`crate::pickle`):
//! the tensor-rebuilding globals a state dict needs, re-implemented in Rust. Any other name
//! (`os.system`, `torch.storage._load_from_bytes`, which would unpickle nested bytes, a model
//! class, ...) stops loading with `Fault::ForbiddenGlobal`.

use std::rc::Rc;

use super::dtype::DType;
use super::error::{Fault, Parsed};
use crate::pickle::{self, Caller, Heap, PickleError, corrupt, latin1_bytes, to_usize};

/// A pickled object of a state dict.
pub(super) type Value = pickle::Value<Global, Object>;

/// What the allow-listed globals build.
#[derive(Clone, Debug)]
pub(super) enum Object {
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

/// The allow-list: every global a state dict needs, each re-implemented in Rust.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Global {
    OrderedDict,
    /// `torch._utils._rebuild_tensor` (pre-1.0 files such as the akamaster ResNets) and `_v2`.
    RebuildTensor,
    /// `_rebuild_parameter(_with_state)`: a Parameter is its data tensor for us.
    RebuildParameter,
    /// `torch._tensor._rebuild_from_type_v2(func, type, args, state)`: calls an allowed `func`.
    RebuildFromType,
    /// `torch.Tensor` / `torch.nn.parameter.Parameter`: accepted as inert type tags only.
    TensorClass,
    Storage(DType),
    TorchSize,
    /// How protocol 2 spells a `bytes` object: `_codecs.encode(str, 'latin1')`.
    CodecsEncode,
}

/// A storage referenced by a persistent id; its bytes live outside the pickle.
#[derive(Debug)]
pub(super) struct StorageRef {
    pub dtype: DType,
    pub key: Rc<str>,
    /// Elements in the whole (root) storage.
    pub numel: usize,
    /// Legacy files may reference a slice (view) of a root storage: element offset and length.
    pub view: Option<(usize, usize)>,
}

/// A tensor as `_rebuild_tensor` describes it: a window of a storage, in elements.
#[derive(Debug)]
pub(super) struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// The result of one pickle: its root object plus the containers it refers to.
pub(super) struct Pickled {
    pub root: Value,
    heap: Heap<Global, Object>,
    /// Every storage the pickle referenced, in order (the legacy format needs their dtypes).
    pub storages: Vec<Rc<StorageRef>>,
    /// Byte offset just past the STOP opcode (the legacy format has pickles back to back).
    pub end: usize,
}

impl Pickled {
    pub(super) fn items(&self, value: &Value) -> Option<&[Value]> {
        self.heap.items(value)
    }

    pub(super) fn entries(&self, value: &Value) -> Option<&[(Value, Value)]> {
        self.heap.entries(value)
    }
}

/// Runs one pickle starting at `data[0]`.
pub(super) fn unpickle(data: &[u8]) -> Parsed<Pickled> {
    let mut torch = Torch { storages: Vec::new() };
    let pickled = pickle::unpickle(data, &mut torch).map_err(|e| match e {
        PickleError::Corrupt(detail) => Fault::Format(detail),
        PickleError::Forbidden(global) => Fault::ForbiddenGlobal(global),
    })?;
    Ok(Pickled {
        root: pickled.root,
        heap: pickled.heap,
        storages: torch.storages,
        end: pickled.end,
    })
}

/// No allow-listed callable takes more (`_rebuild_tensor_v2` takes 7).
const MAX_CALL_ARGS: usize = 8;
/// Far above any real tensor's rank; bounds the work a single opcode can cause.
const MAX_RANK: usize = 64;

type Built = Result<Value, PickleError>;

/// The state-dict caller: remembers every storage referenced.
struct Torch {
    storages: Vec<Rc<StorageRef>>,
}

impl Caller for Torch {
    type Global = Global;
    type Object = Object;

    fn resolve(&self, module: &str, name: &str) -> Result<Global, PickleError> {
        let global = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => Global::RebuildParameter,
            ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromType,
            ("torch" | "torch._tensor", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorClass,
            ("torch", "Size") => Global::TorchSize,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("torch", class) => match DType::from_torch_storage(class) {
                Some(dtype) => Global::Storage(dtype),
                None => return Err(PickleError::Forbidden(format!("{module}.{name}"))),
            },
            _ => return Err(PickleError::Forbidden(format!("{module}.{name}"))),
        };
        Ok(global)
    }

    /// REDUCE: applies an allow-listed global to its argument tuple.
    fn call(&mut self, heap: &mut Heap<Global, Object>, global: Global, args: &Value) -> Built {
        let args = heap.small_tuple(args, "REDUCE arguments", MAX_CALL_ARGS)?;
        match global {
            // `OrderedDict()`; torch pickles the items afterwards with SETITEMS.
            Global::OrderedDict if args.is_empty() => Ok(heap.new_dict(Vec::new())),
            Global::OrderedDict => Err(corrupt("OrderedDict called with initial items")),
            Global::RebuildTensor => rebuild_tensor(heap, &args),
            Global::RebuildParameter => match args.first() {
                Some(Value::Object(Object::Tensor(t))) => Ok(Value::Object(Object::Tensor(t.clone()))),
                _ => Err(corrupt("_rebuild_parameter without a tensor")),
            },
            Global::RebuildFromType => self.rebuild_from_type(heap, &args),
            // Tuples are immutable, so the size can share the argument's node.
            Global::TorchSize => match args.as_slice() {
                [dims @ Value::Tuple(_)] => Ok(dims.clone()),
                _ => Err(corrupt("torch.Size expects one tuple")),
            },
            Global::CodecsEncode => latin1_bytes(&args),
            Global::TensorClass | Global::Storage(_) => Err(corrupt(format!(
                "{global:?} is accepted as a type tag only, not called"
            ))),
        }
    }

    /// BUILD sets Python attributes: OrderedDict `_metadata` (module versions) and tensor
    /// attributes, neither of which carries weights, so the state is dropped.
    fn build(&mut self, _: &Heap<Global, Object>, target: &Value, _state: Value) -> Built {
        match target {
            Value::Dict(_) | Value::Object(Object::Tensor(_)) => Ok(target.clone()),
            other => Err(corrupt(format!("BUILD on {}", other.describe()))),
        }
    }

    fn persistent_load(&mut self, heap: &Heap<Global, Object>, pid: &Value) -> Built {
        let storage = Rc::new(storage_from_pid(heap, pid)?);
        self.storages.push(storage.clone());
        Ok(Value::Object(Object::Storage(storage)))
    }
}

impl Torch {
    /// `_rebuild_from_type_v2(func, new_type, args, state)`: only one level, and only tensor rebuilds,
    /// so a crafted pickle cannot recurse.
    fn rebuild_from_type(&mut self, heap: &mut Heap<Global, Object>, args: &[Value]) -> Built {
        match args {
            [
                Value::Global(func @ (Global::RebuildTensor | Global::RebuildParameter)),
                Value::Global(Global::TensorClass),
                inner,
                ..,
            ] => self.call(heap, *func, inner),
            _ => Err(corrupt(
                "_rebuild_from_type_v2 with arguments other than a tensor rebuild",
            )),
        }
    }
}

/// `_rebuild_tensor(storage, offset, size, stride)`; `_v2` appends requires_grad, hooks and
/// metadata, which do not affect the values.
fn rebuild_tensor(heap: &Heap<Global, Object>, args: &[Value]) -> Built {
    let [Value::Object(Object::Storage(storage)), offset, size, stride, ..] = args else {
        return Err(corrupt("_rebuild_tensor needs (storage, offset, size, stride)"));
    };
    let shape = usize_list(&heap.small_tuple(size, "tensor size", MAX_RANK)?, "tensor size")?;
    let stride = usize_list(&heap.small_tuple(stride, "tensor stride", MAX_RANK)?, "tensor stride")?;
    if shape.len() != stride.len() {
        return Err(corrupt(format!(
            "tensor size {shape:?} and stride {stride:?} differ in rank"
        )));
    }
    Ok(Value::Object(Object::Tensor(Rc::new(TensorRef {
        storage: storage.clone(),
        offset: to_usize(offset, "tensor offset")?,
        shape,
        stride,
    }))))
}

/// `('storage', torch.XStorage, key, location, numel[, view_metadata])` — the zip format
/// has five fields, the legacy format adds a sixth (None, or a view of a larger storage).
fn storage_from_pid(heap: &Heap<Global, Object>, pid: &Value) -> Result<StorageRef, PickleError> {
    let fields = heap.small_tuple(pid, "persistent id", 6)?;
    let (dtype, key, numel, view) = match fields.as_slice() {
        [
            Value::Str(tag),
            Value::Global(Global::Storage(dtype)),
            key,
            _location,
            numel,
            rest @ ..,
        ] if &**tag == "storage" && rest.len() <= 1 => (*dtype, key, numel, rest.first()),
        _ => {
            return Err(corrupt(
                "persistent id is not a ('storage', torch.XStorage, key, location, numel) record",
            ));
        }
    };
    let key: Rc<str> = match key {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string().into(),
        other => {
            return Err(corrupt(format!("storage key is not a string but {}", other.describe())));
        }
    };
    let numel = to_usize(numel, "storage size")?;
    let view = match view {
        None | Some(Value::None) => None,
        Some(meta) => {
            let meta = heap.small_tuple(meta, "storage view", 3)?;
            match meta.as_slice() {
                [_view_key, offset, size] => Some((to_usize(offset, "view offset")?, to_usize(size, "view size")?)),
                _ => return Err(corrupt("storage view is not (key, offset, size)")),
            }
        }
    };
    Ok(StorageRef {
        dtype,
        key,
        numel,
        view,
    })
}

fn usize_list(items: &[Value], what: &str) -> Result<Vec<usize>, PickleError> {
    items.iter().map(|v| to_usize(v, what)).collect()
}
