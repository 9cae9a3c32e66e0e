//! A restricted pickle reader: just enough of the pickle virtual machine to rebuild a PyTorch
//! state dict, and nothing that can run code.
//!
//! Safety model: a pickle can only call what its GLOBAL / STACK_GLOBAL opcodes name. We resolve
//! those names against a fixed allow-list of tensor-rebuilding functions (`resolve_global`) that we
//! re-implement in Rust; any other name (`os.system`, `torch.storage._load_from_bytes`, which would
//! unpickle nested bytes, a model class, ...) stops loading with `Fault::ForbiddenGlobal`.
//!
//! Robustness: containers live in an arena and refer to each other by index, so self-referencing
//! or deeply nested input can neither recurse nor overflow the stack on drop; every read is
//! bounds-checked, so truncated input is an error, never a panic.

use std::collections::HashMap;
use std::rc::Rc;

use super::dtype::DType;
use super::error::{Fault, Parsed, corrupt};

pub(super) type NodeId = usize;

/// A pickled object. Containers are indices into `Pickled::arena`.
#[derive(Clone, Debug)]
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(NodeId),
    List(NodeId),
    Dict(NodeId),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

#[derive(Debug)]
enum Node {
    Seq(Vec<Value>),
    Pairs(Vec<(Value, Value)>),
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
    arena: Vec<Node>,
    /// Every storage the pickle referenced, in order (the legacy format needs their dtypes).
    pub storages: Vec<Rc<StorageRef>>,
    /// Byte offset just past the STOP opcode (the legacy format has pickles back to back).
    pub end: usize,
}

impl Pickled {
    pub(super) fn items(&self, value: &Value) -> Option<&[Value]> {
        match value {
            Value::Tuple(id) | Value::List(id) => match &self.arena[*id] {
                Node::Seq(items) => Some(items),
                Node::Pairs(_) => None,
            },
            _ => None,
        }
    }

    pub(super) fn entries(&self, value: &Value) -> Option<&[(Value, Value)]> {
        match value {
            Value::Dict(id) => match &self.arena[*id] {
                Node::Pairs(pairs) => Some(pairs),
                Node::Seq(_) => None,
            },
            _ => None,
        }
    }
}

/// What a value is, for error messages; scalars show their value to help locate them.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::None => "None".into(),
        Value::Bool(b) => format!("bool ({b})"),
        Value::Int(i) => format!("int ({i})"),
        Value::Float(x) => format!("float ({x})"),
        Value::Str(s) if s.len() <= 40 => format!("str ({s:?})"),
        Value::Str(_) => "str".into(),
        Value::Bytes(b) => format!("bytes ({} bytes)", b.len()),
        Value::Tuple(_) => "tuple".into(),
        Value::List(_) => "list".into(),
        Value::Dict(_) => "dict".into(),
        Value::Global(g) => format!("global ({g:?})"),
        Value::Storage(_) => "storage".into(),
        Value::Tensor(_) => "tensor".into(),
    }
}

/// Runs one pickle starting at `data[0]`.
pub(super) fn unpickle(data: &[u8]) -> Parsed<Pickled> {
    Machine::new(data).run()
}

fn resolve_global(module: &str, name: &str) -> Parsed<Global> {
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
            None => return Err(Fault::ForbiddenGlobal(format!("{module}.{name}"))),
        },
        _ => return Err(Fault::ForbiddenGlobal(format!("{module}.{name}"))),
    };
    Ok(global)
}

/// No allow-listed callable takes more (`_rebuild_tensor_v2` takes 7).
const MAX_CALL_ARGS: usize = 8;
/// Far above any real tensor's rank; bounds the work a single opcode can cause.
const MAX_RANK: usize = 64;

mod op {
    pub const PROTO: u8 = 0x80;
    pub const FRAME: u8 = 0x95;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINFLOAT: u8 = b'G';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE: u8 = b'X';
    pub const BINUNICODE8: u8 = 0x8d;
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BINBYTES: u8 = b'B';
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const EMPTY_LIST: u8 = b']';
    pub const LIST: u8 = b'l';
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const EMPTY_DICT: u8 = b'}';
    pub const DICT: u8 = b'd';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MEMOIZE: u8 = 0x94;
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const GLOBAL: u8 = b'c';
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const BINPERSID: u8 = b'Q';
}

/// Bounds-checked reading of the opcode stream.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Parsed<&'a [u8]> {
        let left = self.data.len() - self.pos;
        if n > left {
            return Err(corrupt(format!(
                "truncated pickle: {n} bytes needed at byte {}, {left} left",
                self.pos
            )));
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Parsed<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u8(&mut self) -> Parsed<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Parsed<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Parsed<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn i32(&mut self) -> Parsed<i32> {
        self.array().map(i32::from_le_bytes)
    }

    fn u64(&mut self) -> Parsed<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// Length prefixes come as u8/u32/u64/i32; all end up checked against the bytes left by `take`.
    fn sized(&mut self, len: impl TryInto<usize>) -> Parsed<&'a [u8]> {
        let len = len
            .try_into()
            .map_err(|_| corrupt(format!("invalid length at byte {}", self.pos)))?;
        self.take(len)
    }

    /// GLOBAL's operands are newline-terminated text.
    fn line(&mut self) -> Parsed<&'a str> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| corrupt("truncated pickle: unterminated GLOBAL"))?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| corrupt("GLOBAL name is not UTF-8"))
    }
}

struct Machine<'a> {
    input: Cursor<'a>,
    stack: Vec<Value>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Vec<Node>,
    storages: Vec<Rc<StorageRef>>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine {
            input: Cursor { data, pos: 0 },
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            arena: Vec::new(),
            storages: Vec::new(),
        }
    }

    fn run(mut self) -> Parsed<Pickled> {
        loop {
            let at = self.input.pos;
            let opcode = self.input.u8()?;
            let done = self.step(opcode).map_err(|fault| match fault {
                Fault::Format(detail) => corrupt(format!("pickle opcode 0x{opcode:02x} at byte {at}: {detail}")),
                other => other,
            })?;
            if done {
                let root = self.pop()?;
                return Ok(Pickled {
                    root,
                    arena: self.arena,
                    storages: self.storages,
                    end: self.input.pos,
                });
            }
        }
    }

    /// Executes one opcode; true at STOP.
    fn step(&mut self, opcode: u8) -> Parsed<bool> {
        match opcode {
            op::STOP => return Ok(true),
            op::PROTO => {
                let version = self.input.u8()?;
                if version > 5 {
                    return Err(corrupt(format!("unknown pickle protocol {version}")));
                }
            }
            op::FRAME => {
                self.input.u64()?; // framing only groups opcodes; the data is already in memory
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => self.pop_one()?,
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let top = self.top()?.clone();
                self.stack.push(top);
            }
            op::NONE => self.stack.push(Value::None),
            op::NEWTRUE => self.stack.push(Value::Bool(true)),
            op::NEWFALSE => self.stack.push(Value::Bool(false)),
            op::BININT => {
                let v = self.input.i32()?;
                self.stack.push(Value::Int(v.into()));
            }
            op::BININT1 => {
                let v = self.input.u8()?;
                self.stack.push(Value::Int(v.into()));
            }
            op::BININT2 => {
                let v = self.input.u16()?;
                self.stack.push(Value::Int(v.into()));
            }
            op::LONG1 => {
                let n = self.input.u8()?;
                let bytes = self.input.sized(n)?;
                self.stack.push(Value::Int(decode_long(bytes)?));
            }
            op::LONG4 => {
                let n = self.input.i32()?;
                let bytes = self.input.sized(n)?;
                self.stack.push(Value::Int(decode_long(bytes)?));
            }
            op::BINFLOAT => {
                let v = f64::from_be_bytes(self.input.array()?); // the one big-endian opcode
                self.stack.push(Value::Float(v));
            }
            op::SHORT_BINUNICODE => {
                let n = self.input.u8()?;
                self.push_text(n)?;
            }
            op::BINUNICODE => {
                let n = self.input.u32()?;
                self.push_text(n)?;
            }
            op::BINUNICODE8 => {
                let n = self.input.u64()?;
                self.push_text(n)?;
            }
            op::SHORT_BINSTRING => {
                let n = self.input.u8()?;
                self.push_py2_string(n)?;
            }
            op::BINSTRING => {
                let n = self.input.i32()?;
                self.push_py2_string(n)?;
            }
            op::SHORT_BINBYTES => {
                let n = self.input.u8()?;
                self.push_bytes(n)?;
            }
            op::BINBYTES => {
                let n = self.input.u32()?;
                self.push_bytes(n)?;
            }
            op::BINBYTES8 => {
                let n = self.input.u64()?;
                self.push_bytes(n)?;
            }
            op::EMPTY_TUPLE => self.push_tuple(Vec::new()),
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push_tuple(items);
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(opcode - op::TUPLE1 + 1);
                let items = self.pop_n(n)?;
                self.push_tuple(items);
            }
            op::EMPTY_LIST => self.push_list(Vec::new()),
            op::LIST => {
                let items = self.pop_mark()?;
                self.push_list(items);
            }
            op::APPEND => {
                let item = self.pop()?;
                self.extend_list(vec![item])?;
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            op::EMPTY_DICT => self.push_dict(Vec::new()),
            op::DICT => {
                let items = self.pop_mark()?;
                let pairs = into_pairs(items)?;
                self.push_dict(pairs);
            }
            op::SETITEM => {
                let items = self.pop_n(2)?;
                self.extend_dict(into_pairs(items)?)?;
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                self.extend_dict(into_pairs(items)?)?;
            }
            op::BINPUT => {
                let key = self.input.u8()?;
                self.memo_put(key.into())?;
            }
            op::LONG_BINPUT => {
                let key = self.input.u32()?;
                self.memo_put(key)?;
            }
            op::MEMOIZE => {
                let key = u32::try_from(self.memo.len()).map_err(|_| corrupt("memo overflow"))?;
                self.memo_put(key)?;
            }
            op::BINGET => {
                let key = self.input.u8()?;
                self.memo_get(key.into())?;
            }
            op::LONG_BINGET => {
                let key = self.input.u32()?;
                self.memo_get(key)?;
            }
            op::GLOBAL => {
                let module = self.input.line()?;
                let name = self.input.line()?;
                self.stack.push(Value::Global(resolve_global(module, name)?));
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err(corrupt("STACK_GLOBAL needs two strings"));
                };
                self.stack.push(Value::Global(resolve_global(&module, &name)?));
            }
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let result = self.call(&callable, &args)?;
                self.stack.push(result);
            }
            op::BUILD => self.build()?,
            op::BINPERSID => {
                let pid = self.pop()?;
                let storage = Rc::new(self.storage_from_pid(&pid)?);
                self.storages.push(storage.clone());
                self.stack.push(Value::Storage(storage));
            }
            other => {
                return Err(corrupt(format!(
                    "unsupported opcode {:?} (not used by PyTorch state dicts)",
                    char::from(other)
                )));
            }
        }
        Ok(false)
    }

    fn pop(&mut self) -> Parsed<Value> {
        if self.marks.last().is_some_and(|&m| m == self.stack.len()) {
            return Err(corrupt("stack underflow (value expected, found MARK)"));
        }
        self.stack.pop().ok_or_else(|| corrupt("stack underflow"))
    }

    /// POP may also remove a bare MARK, as in CPython.
    fn pop_one(&mut self) -> Parsed<()> {
        if self.marks.last().is_some_and(|&m| m == self.stack.len()) {
            self.marks.pop();
            return Ok(());
        }
        self.pop().map(drop)
    }

    fn pop_n(&mut self, n: usize) -> Parsed<Vec<Value>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(corrupt("stack underflow"));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Parsed<Vec<Value>> {
        let mark = self.marks.pop().ok_or_else(|| corrupt("no MARK on the stack"))?;
        Ok(self.stack.split_off(mark))
    }

    fn top(&self) -> Parsed<&Value> {
        self.stack.last().ok_or_else(|| corrupt("stack underflow"))
    }

    fn push_text(&mut self, len: impl TryInto<usize>) -> Parsed<()> {
        let bytes = self.input.sized(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt("string is not UTF-8"))?;
        self.stack.push(Value::Str(text.into()));
        Ok(())
    }

    /// Python 2 `str`: text when it is UTF-8 (keys, names), raw bytes otherwise.
    fn push_py2_string(&mut self, len: impl TryInto<usize>) -> Parsed<()> {
        let bytes = self.input.sized(len)?;
        self.stack.push(match std::str::from_utf8(bytes) {
            Ok(text) => Value::Str(text.into()),
            Err(_) => Value::Bytes(bytes.into()),
        });
        Ok(())
    }

    fn push_bytes(&mut self, len: impl TryInto<usize>) -> Parsed<()> {
        let bytes = self.input.sized(len)?;
        self.stack.push(Value::Bytes(bytes.into()));
        Ok(())
    }

    fn new_node(&mut self, node: Node) -> NodeId {
        self.arena.push(node);
        self.arena.len() - 1
    }

    fn push_tuple(&mut self, items: Vec<Value>) {
        let id = self.new_node(Node::Seq(items));
        self.stack.push(Value::Tuple(id));
    }

    fn push_list(&mut self, items: Vec<Value>) {
        let id = self.new_node(Node::Seq(items));
        self.stack.push(Value::List(id));
    }

    fn push_dict(&mut self, pairs: Vec<(Value, Value)>) {
        let id = self.new_node(Node::Pairs(pairs));
        self.stack.push(Value::Dict(id));
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Parsed<()> {
        match self.top()? {
            &Value::List(id) => match &mut self.arena[id] {
                Node::Seq(list) => list.extend(items),
                Node::Pairs(_) => unreachable!("List values always point at Seq nodes"),
            },
            other => return Err(corrupt(format!("APPEND(S) to {}", describe(other)))),
        }
        Ok(())
    }

    fn extend_dict(&mut self, pairs: Vec<(Value, Value)>) -> Parsed<()> {
        match self.top()? {
            &Value::Dict(id) => match &mut self.arena[id] {
                Node::Pairs(dict) => dict.extend(pairs),
                Node::Seq(_) => unreachable!("Dict values always point at Pairs nodes"),
            },
            other => return Err(corrupt(format!("SETITEM(S) on {}", describe(other)))),
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u32) -> Parsed<()> {
        let top = self.top()?.clone();
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Parsed<()> {
        let value = self
            .memo
            .get(&key)
            .ok_or_else(|| corrupt(format!("memo key {key} was never stored")))?;
        self.stack.push(value.clone());
        Ok(())
    }

    /// BUILD sets Python attributes: OrderedDict `_metadata` (module versions) and tensor
    /// attributes, neither of which carries weights, so the state is dropped.
    fn build(&mut self) -> Parsed<()> {
        self.pop()?;
        match self.top()? {
            Value::Dict(_) | Value::Tensor(_) => Ok(()),
            other => Err(corrupt(format!("BUILD on {}", describe(other)))),
        }
    }

    /// REDUCE: applies an allow-listed global to its argument tuple.
    fn call(&mut self, callable: &Value, args: &Value) -> Parsed<Value> {
        let Value::Global(global) = callable else {
            return Err(corrupt(format!("REDUCE calls {}", describe(callable))));
        };
        let args = self.small_tuple(args, "REDUCE arguments", MAX_CALL_ARGS)?;
        match global {
            Global::OrderedDict => self.ordered_dict(&args),
            Global::RebuildTensor => self.rebuild_tensor(&args),
            Global::RebuildParameter => match args.first() {
                Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
                _ => Err(corrupt("_rebuild_parameter without a tensor")),
            },
            Global::RebuildFromType => self.rebuild_from_type(&args),
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

    /// A copy of a short tuple's items. The length cap comes first: copying a huge tuple
    /// on every REDUCE would let a small crafted pickle take quadratic time.
    fn small_tuple(&self, value: &Value, what: &str, max_len: usize) -> Parsed<Vec<Value>> {
        let items = match value {
            Value::Tuple(id) | Value::List(id) => match &self.arena[*id] {
                Node::Seq(items) => items,
                Node::Pairs(_) => unreachable!("Tuple/List values always point at Seq nodes"),
            },
            other => {
                return Err(corrupt(format!("{what}: expected a tuple, found {}", describe(other))));
            }
        };
        if items.len() > max_len {
            return Err(corrupt(format!(
                "{what}: {} items, at most {max_len} expected",
                items.len()
            )));
        }
        Ok(items.clone())
    }

    /// `OrderedDict()`; torch pickles the items afterwards with SETITEMS.
    fn ordered_dict(&mut self, args: &[Value]) -> Parsed<Value> {
        if !args.is_empty() {
            return Err(corrupt("OrderedDict called with initial items"));
        }
        let id = self.new_node(Node::Pairs(Vec::new()));
        Ok(Value::Dict(id))
    }

    /// `_rebuild_tensor(storage, offset, size, stride)`; `_v2` appends requires_grad, hooks and
    /// metadata, which do not affect the values.
    fn rebuild_tensor(&self, args: &[Value]) -> Parsed<Value> {
        let [Value::Storage(storage), offset, size, stride, ..] = args else {
            return Err(corrupt("_rebuild_tensor needs (storage, offset, size, stride)"));
        };
        let shape = usize_list(&self.small_tuple(size, "tensor size", MAX_RANK)?, "tensor size")?;
        let stride = usize_list(&self.small_tuple(stride, "tensor stride", MAX_RANK)?, "tensor stride")?;
        if shape.len() != stride.len() {
            return Err(corrupt(format!(
                "tensor size {shape:?} and stride {stride:?} differ in rank"
            )));
        }
        Ok(Value::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            offset: to_usize(offset, "tensor offset")?,
            shape,
            stride,
        })))
    }

    /// `_rebuild_from_type_v2(func, new_type, args, state)`: only one level, and only tensor rebuilds,
    /// so a crafted pickle cannot recurse.
    fn rebuild_from_type(&mut self, args: &[Value]) -> Parsed<Value> {
        match args {
            [
                Value::Global(func @ (Global::RebuildTensor | Global::RebuildParameter)),
                Value::Global(Global::TensorClass),
                inner,
                ..,
            ] => {
                let func = Value::Global(*func);
                self.call(&func, inner)
            }
            _ => Err(corrupt(
                "_rebuild_from_type_v2 with arguments other than a tensor rebuild",
            )),
        }
    }

    /// `('storage', torch.XStorage, key, location, numel[, view_metadata])` — the zip format
    /// has five fields, the legacy format adds a sixth (None, or a view of a larger storage).
    fn storage_from_pid(&self, pid: &Value) -> Parsed<StorageRef> {
        let fields = self.small_tuple(pid, "persistent id", 6)?;
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
                return Err(corrupt(format!("storage key is not a string but {}", describe(other))));
            }
        };
        let numel = to_usize(numel, "storage size")?;
        let view = match view {
            None | Some(Value::None) => None,
            Some(meta) => {
                let meta = self.small_tuple(meta, "storage view", 3)?;
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
}

fn into_pairs(items: Vec<Value>) -> Parsed<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return Err(corrupt("odd number of items for a dict"));
    }
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut iter = items.into_iter();
    while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
        pairs.push((k, v));
    }
    Ok(pairs)
}

/// LONG1/LONG4 payload: little-endian two's complement of any length; we accept up to 128 bits
/// (the legacy magic number needs 80).
fn decode_long(bytes: &[u8]) -> Parsed<i128> {
    if bytes.len() > 16 {
        return Err(corrupt(format!("integer of {} bytes is too large", bytes.len())));
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let mut wide = [if negative { 0xff } else { 0 }; 16];
    wide[..bytes.len()].copy_from_slice(bytes);
    Ok(i128::from_le_bytes(wide))
}

fn to_usize(value: &Value, what: &str) -> Parsed<usize> {
    match value {
        Value::Int(i) => usize::try_from(*i).map_err(|_| corrupt(format!("{what} {i} is out of range"))),
        other => Err(corrupt(format!("{what} is not an int but {}", describe(other)))),
    }
}

fn usize_list(items: &[Value], what: &str) -> Parsed<Vec<usize>> {
    items.iter().map(|v| to_usize(v, what)).collect()
}

/// `_codecs.encode(text, 'latin1')`: each char below 256 is one byte.
fn latin1_bytes(args: &[Value]) -> Parsed<Value> {
    let [Value::Str(text), Value::Str(encoding), ..] = args else {
        return Err(corrupt("_codecs.encode needs (str, encoding)"));
    };
    if !matches!(&**encoding, "latin1" | "latin-1") {
        return Err(corrupt(format!("_codecs.encode with encoding {encoding}")));
    }
    let bytes = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| corrupt("non-latin1 char in bytes")))
        .collect::<Parsed<Vec<u8>>>()?;
    Ok(Value::Bytes(bytes.into()))
}
