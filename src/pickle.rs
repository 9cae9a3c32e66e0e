//! The one restricted pickle interpreter: just enough of the pickle virtual machine to read data
//! (PyTorch state dicts in `weights`, CIFAR-10's python batches in `data`), and nothing that can
//! run code.
//!
//! Safety model: a pickle can only call what its GLOBAL / STACK_GLOBAL opcodes name. Each caller
//! gives its own allow-list ([`Caller::resolve`]) and re-implements those callables in Rust
//! ([`Caller::call`], [`Caller::build`], [`Caller::persistent_load`]); any other name stops
//! loading with [`PickleError::Forbidden`].
//!
//! Robustness: containers live in an arena ([`Heap`]) and refer to each other by index, so
//! self-referencing or deeply nested input can neither recurse nor overflow the stack on drop;
//! every read is bounds-checked, so truncated input is an error, never a panic.

use std::collections::HashMap;
use std::fmt::Debug;
use std::rc::Rc;

pub type NodeId = usize;

/// A dict's entry: (key, value).
pub type Pair<G, O> = (Value<G, O>, Value<G, O>);

/// A pickled object: scalars inline, containers as indices into the [`Heap`], and what the
/// caller's globals produce (`G`: a resolved global, `O`: an object its calls build).
#[derive(Clone, Debug)]
pub enum Value<G, O> {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(NodeId),
    List(NodeId),
    Dict(NodeId),
    Global(G),
    Object(O),
}

impl<G: Debug, O: Debug> Value<G, O> {
    /// What a value is, for error messages; scalars show their value to help locate them.
    pub fn describe(&self) -> String {
        match self {
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
            Value::Object(o) => format!("{o:?}"),
        }
    }

    /// Text of a str, or of bytes that are UTF-8 (Python 2 and 3 spell keys differently).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The bytes of a bytes object, or of a Python 2 `str` read as text.
    pub fn as_bytes(&self) -> Option<Rc<[u8]>> {
        match self {
            Value::Bytes(b) => Some(b.clone()),
            Value::Str(s) => Some(Rc::from(s.as_bytes())),
            _ => None,
        }
    }
}

/// Why a pickle could not be read.
#[derive(Debug, PartialEq)]
pub enum PickleError {
    /// Malformed or unsupported input (the message says where).
    Corrupt(String),
    /// A global outside the caller's allow-list, as `module.name`.
    Forbidden(String),
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PickleError::Corrupt(detail) => write!(f, "{detail}"),
            PickleError::Forbidden(global) => write!(f, "refusing pickle global {global}"),
        }
    }
}

pub type Parsed<T> = Result<T, PickleError>;

pub fn corrupt(detail: impl Into<String>) -> PickleError {
    PickleError::Corrupt(detail.into())
}

#[derive(Debug)]
enum Node<G, O> {
    Seq(Vec<Value<G, O>>),
    Pairs(Vec<Pair<G, O>>),
}

/// The containers of one pickle.
#[derive(Debug)]
pub struct Heap<G, O> {
    arena: Vec<Node<G, O>>,
}

impl<G: Clone + Debug, O: Clone + Debug> Heap<G, O> {
    /// The items of a tuple or list.
    pub fn items(&self, value: &Value<G, O>) -> Option<&[Value<G, O>]> {
        match value {
            Value::Tuple(id) | Value::List(id) => match &self.arena[*id] {
                Node::Seq(items) => Some(items),
                Node::Pairs(_) => None,
            },
            _ => None,
        }
    }

    /// The entries of a dict.
    pub fn entries(&self, value: &Value<G, O>) -> Option<&[Pair<G, O>]> {
        match value {
            Value::Dict(id) => match &self.arena[*id] {
                Node::Pairs(pairs) => Some(pairs),
                Node::Seq(_) => None,
            },
            _ => None,
        }
    }

    /// The value of a dict's entry whose key is `key` as str or bytes.
    pub fn get(&self, dict: &Value<G, O>, key: &str) -> Option<&Value<G, O>> {
        self.entries(dict)?
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
    }

    /// A copy of a short tuple's (or list's) items. The length cap comes first: copying a huge
    /// tuple on every REDUCE would let a small crafted pickle take quadratic time.
    pub fn small_tuple(&self, value: &Value<G, O>, what: &str, max_len: usize) -> Parsed<Vec<Value<G, O>>> {
        let items = self
            .items(value)
            .ok_or_else(|| corrupt(format!("{what}: expected a tuple, found {}", value.describe())))?;
        if items.len() > max_len {
            return Err(corrupt(format!(
                "{what}: {} items, at most {max_len} expected",
                items.len()
            )));
        }
        Ok(items.to_vec())
    }

    pub fn new_tuple(&mut self, items: Vec<Value<G, O>>) -> Value<G, O> {
        Value::Tuple(self.push(Node::Seq(items)))
    }

    pub fn new_list(&mut self, items: Vec<Value<G, O>>) -> Value<G, O> {
        Value::List(self.push(Node::Seq(items)))
    }

    pub fn new_dict(&mut self, pairs: Vec<Pair<G, O>>) -> Value<G, O> {
        Value::Dict(self.push(Node::Pairs(pairs)))
    }

    fn push(&mut self, node: Node<G, O>) -> NodeId {
        self.arena.push(node);
        self.arena.len() - 1
    }
}

/// What one kind of caller allows a pickle to do: its globals and what calling them builds.
pub trait Caller {
    type Global: Copy + Debug;
    type Object: Clone + Debug;

    /// The global `module.name`, or [`PickleError::Forbidden`].
    fn resolve(&self, module: &str, name: &str) -> Parsed<Self::Global>;

    /// REDUCE: `global(*args)`.
    fn call(
        &mut self,
        heap: &mut Heap<Self::Global, Self::Object>,
        global: Self::Global,
        args: &Value<Self::Global, Self::Object>,
    ) -> Parsed<Value<Self::Global, Self::Object>>;

    /// BUILD: `target.__setstate__(state)`; returns what replaces `target` on the stack.
    fn build(
        &mut self,
        heap: &Heap<Self::Global, Self::Object>,
        target: &Value<Self::Global, Self::Object>,
        state: Value<Self::Global, Self::Object>,
    ) -> Parsed<Value<Self::Global, Self::Object>>;

    /// BINPERSID: an object stored outside the pickle (none unless the caller says so).
    fn persistent_load(
        &mut self,
        heap: &Heap<Self::Global, Self::Object>,
        pid: &Value<Self::Global, Self::Object>,
    ) -> Parsed<Value<Self::Global, Self::Object>> {
        let _ = (heap, pid);
        Err(corrupt("persistent ids are not supported here"))
    }
}

/// The result of one pickle: its root object, the containers it refers to, and the byte offset
/// just past its STOP opcode (the legacy torch format has pickles back to back).
pub struct Pickled<G, O> {
    pub root: Value<G, O>,
    pub heap: Heap<G, O>,
    pub end: usize,
}

/// Runs one pickle starting at `data[0]` with `caller`'s allow-list.
pub fn unpickle<C: Caller>(data: &[u8], caller: &mut C) -> Parsed<Pickled<C::Global, C::Object>> {
    Machine {
        input: Cursor { data, pos: 0 },
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        heap: Heap { arena: Vec::new() },
        caller,
    }
    .run()
}

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
    pub const BYTEARRAY8: u8 = 0x96;
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

struct Machine<'a, C: Caller> {
    input: Cursor<'a>,
    stack: Vec<Value<C::Global, C::Object>>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value<C::Global, C::Object>>,
    heap: Heap<C::Global, C::Object>,
    caller: &'a mut C,
}

impl<C: Caller> Machine<'_, C> {
    fn run(mut self) -> Parsed<Pickled<C::Global, C::Object>> {
        loop {
            let at = self.input.pos;
            let opcode = self.input.u8()?;
            let done = self.step(opcode).map_err(|fault| match fault {
                PickleError::Corrupt(detail) => corrupt(format!("pickle opcode 0x{opcode:02x} at byte {at}: {detail}")),
                other => other,
            })?;
            if done {
                let root = self.pop()?;
                return Ok(Pickled {
                    root,
                    heap: self.heap,
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
            op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = self.input.u64()?;
                self.push_bytes(n)?;
            }
            op::EMPTY_TUPLE => self.push_new(|heap| heap.new_tuple(Vec::new())),
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push_new(|heap| heap.new_tuple(items));
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(opcode - op::TUPLE1 + 1);
                let items = self.pop_n(n)?;
                self.push_new(|heap| heap.new_tuple(items));
            }
            op::EMPTY_LIST => self.push_new(|heap| heap.new_list(Vec::new())),
            op::LIST => {
                let items = self.pop_mark()?;
                self.push_new(|heap| heap.new_list(items));
            }
            op::APPEND => {
                let item = self.pop()?;
                self.extend_list(vec![item])?;
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            op::EMPTY_DICT => self.push_new(|heap| heap.new_dict(Vec::new())),
            op::DICT => {
                let pairs = into_pairs(self.pop_mark()?)?;
                self.push_new(|heap| heap.new_dict(pairs));
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
                let global = self.caller.resolve(module, name)?;
                self.stack.push(Value::Global(global));
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err(corrupt("STACK_GLOBAL needs two strings"));
                };
                let global = self.caller.resolve(&module, &name)?;
                self.stack.push(Value::Global(global));
            }
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let Value::Global(global) = callable else {
                    return Err(corrupt(format!("REDUCE calls {}", callable.describe())));
                };
                let result = self.caller.call(&mut self.heap, global, &args)?;
                self.stack.push(result);
            }
            op::BUILD => {
                let state = self.pop()?;
                let target = self.top()?.clone();
                let built = self.caller.build(&self.heap, &target, state)?;
                *self.stack.last_mut().expect("top exists") = built;
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                let object = self.caller.persistent_load(&self.heap, &pid)?;
                self.stack.push(object);
            }
            other => {
                return Err(corrupt(format!("unsupported opcode {:?}", char::from(other))));
            }
        }
        Ok(false)
    }

    fn push_new(&mut self, make: impl FnOnce(&mut Heap<C::Global, C::Object>) -> Value<C::Global, C::Object>) {
        let value = make(&mut self.heap);
        self.stack.push(value);
    }

    fn pop(&mut self) -> Parsed<Value<C::Global, C::Object>> {
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

    fn pop_n(&mut self, n: usize) -> Parsed<Vec<Value<C::Global, C::Object>>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(corrupt("stack underflow"));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Parsed<Vec<Value<C::Global, C::Object>>> {
        let mark = self.marks.pop().ok_or_else(|| corrupt("no MARK on the stack"))?;
        Ok(self.stack.split_off(mark))
    }

    fn top(&self) -> Parsed<&Value<C::Global, C::Object>> {
        self.stack.last().ok_or_else(|| corrupt("stack underflow"))
    }

    fn push_text(&mut self, len: impl TryInto<usize>) -> Parsed<()> {
        let bytes = self.input.sized(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt("string is not UTF-8"))?;
        self.stack.push(Value::Str(text.into()));
        Ok(())
    }

    /// Python 2 `str`: text when it is UTF-8 (keys, names), raw bytes otherwise
    /// ([`Value::as_bytes`] reads either as bytes).
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

    fn extend_list(&mut self, items: Vec<Value<C::Global, C::Object>>) -> Parsed<()> {
        match self.top()? {
            &Value::List(id) => match &mut self.heap.arena[id] {
                Node::Seq(list) => list.extend(items),
                Node::Pairs(_) => unreachable!("List values always point at Seq nodes"),
            },
            other => return Err(corrupt(format!("APPEND(S) to {}", other.describe()))),
        }
        Ok(())
    }

    fn extend_dict(&mut self, pairs: Vec<Pair<C::Global, C::Object>>) -> Parsed<()> {
        match self.top()? {
            &Value::Dict(id) => match &mut self.heap.arena[id] {
                Node::Pairs(dict) => dict.extend(pairs),
                Node::Seq(_) => unreachable!("Dict values always point at Pairs nodes"),
            },
            other => return Err(corrupt(format!("SETITEM(S) on {}", other.describe()))),
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
}

fn into_pairs<G, O>(items: Vec<Value<G, O>>) -> Parsed<Vec<Pair<G, O>>> {
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
/// (the legacy torch magic number needs 80).
fn decode_long(bytes: &[u8]) -> Parsed<i128> {
    if bytes.len() > 16 {
        return Err(corrupt(format!("integer of {} bytes is too large", bytes.len())));
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let mut wide = [if negative { 0xff } else { 0 }; 16];
    wide[..bytes.len()].copy_from_slice(bytes);
    Ok(i128::from_le_bytes(wide))
}

/// A non-negative int as usize.
pub fn to_usize<G: Debug, O: Debug>(value: &Value<G, O>, what: &str) -> Parsed<usize> {
    match value {
        Value::Int(i) => usize::try_from(*i).map_err(|_| corrupt(format!("{what} {i} is out of range"))),
        other => Err(corrupt(format!("{what} is not an int but {}", other.describe()))),
    }
}

/// `_codecs.encode(text, 'latin1')`: how Python 3's protocol 2 spells `bytes`; each char below
/// 256 is one byte.
pub fn latin1_bytes<G: Debug, O: Debug>(args: &[Value<G, O>]) -> Parsed<Value<G, O>> {
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
