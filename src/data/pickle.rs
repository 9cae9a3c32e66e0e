//! A minimal, restricted pickle reader for CIFAR-10's python batches (`test_batch`): a dict with
//! `data` (a numpy uint8 array N x 3072) and `labels` (a list of ints).
//!
//! numpy arrays are pickled as calls to numpy functions, which a pickle VM would execute. We execute
//! nothing: GLOBAL names are resolved against a fixed allow-list ([`Global`]) whose effect we reproduce
//! in Rust (`_reconstruct` + BUILD for protocols 2-4, `_frombuffer` for protocol 5, `_codecs.encode` for
//! bytes in Python 3's protocol 2, `numpy.dtype`); any other name is refused. Every read is bounds-checked,
//! so truncated input is an error, never a panic. (The checkpoint reader in `weights` has its own,
//! torch-specific allow-list; the two share no globals, hence two small readers rather than one.)
//!
//! Simplification: the memo stores copies, so a container mutated after being memoized (a
//! self-referencing structure) is seen in its memoized state when fetched again. CIFAR batches never
//! refer to a mutable container twice.

use std::collections::HashMap;
use std::rc::Rc;

#[derive(Clone, Debug)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A float (its value is never needed for CIFAR batches).
    Float,
    /// Python 3 `bytes`, and Python 2 `str` (how the official CIFAR batches spell their keys and data).
    Bytes(Rc<[u8]>),
    Str(Rc<str>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    /// A numpy dtype by its `numpy.dtype(...)` name, e.g. `u1`.
    Dtype(String),
    Array(Array),
}

#[derive(Clone, Debug)]
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

fn resolve(module: &str, name: &str) -> Result<Global, String> {
    Ok(match (module, name) {
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Global::Reconstruct,
        ("numpy", "ndarray") => Global::NdarrayClass,
        ("numpy", "dtype") => Global::DtypeClass,
        ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::FromBuffer,
        ("_codecs", "encode") => Global::CodecsEncode,
        _ => {
            return Err(format!(
                "refusing pickle global {module}.{name} (only numpy array globals are allowed)"
            ));
        }
    })
}

impl Value {
    /// Dict lookup by a key written as str or bytes (Python 2 and 3 spell CIFAR's keys differently).
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        let Value::Dict(pairs) = self else { return None };
        pairs.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
    }

    fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Dtype(_) => "dtype",
            Value::Array(_) => "ndarray",
        }
    }
}

/// Runs the pickle in `data` and returns its root object.
pub(crate) fn unpickle(data: &[u8]) -> Result<Value, String> {
    Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("pickle truncated at byte {} (needed {n} more bytes)", self.pos))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    /// A length prefix of `width` bytes, then that many bytes.
    fn sized(&mut self, width: usize) -> Result<&'a [u8], String> {
        let len = match width {
            1 => u64::from(self.u8()?),
            4 => u64::from(u32::from_le_bytes(self.le()?)),
            _ => u64::from_le_bytes(self.le()?),
        };
        self.take(usize::try_from(len).map_err(|_| "pickle length overflows")?)
    }

    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle truncated inside a GLOBAL")?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| "GLOBAL name is not UTF-8".into())
    }

    fn pop(&mut self) -> Result<Value, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(format!("pickle stack underflow at byte {}", self.pos));
        }
        Ok(self.stack.pop().expect("checked non-empty"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("pickle: no MARK to pop to")?;
        Ok(self.stack.split_off(mark))
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| "pickle stack empty".to_string())
    }

    fn text(bytes: &[u8]) -> Result<Value, String> {
        let s = std::str::from_utf8(bytes).map_err(|_| "pickle string is not UTF-8")?;
        Ok(Value::Str(s.into()))
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            let value = match op {
                0x80 => {
                    self.u8()?;
                    continue;
                }
                0x95 => {
                    self.take(8)?;
                    continue;
                }
                b'.' => return self.pop(),
                b'(' => {
                    self.marks.push(self.stack.len());
                    continue;
                }
                b'0' => {
                    self.pop()?;
                    continue;
                }
                b'1' => {
                    self.pop_mark()?;
                    continue;
                }
                b'2' => self.top()?.clone(),
                b'N' => Value::None,
                0x88 => Value::Bool(true),
                0x89 => Value::Bool(false),
                b'J' => Value::Int(i64::from(i32::from_le_bytes(self.le()?))),
                b'K' => Value::Int(i64::from(self.u8()?)),
                b'M' => Value::Int(i64::from(u16::from_le_bytes(self.le()?))),
                0x8a => long1(self.sized(1)?)?,
                b'G' => {
                    self.take(8)?;
                    Value::Float
                }
                b'U' => Value::Bytes(self.sized(1)?.into()),
                b'T' | b'B' => Value::Bytes(self.sized(4)?.into()),
                b'C' => Value::Bytes(self.sized(1)?.into()),
                0x8e | 0x96 => Value::Bytes(self.sized(8)?.into()),
                0x8c => Self::text(self.sized(1)?)?,
                b'X' => Self::text(self.sized(4)?)?,
                0x8d => Self::text(self.sized(8)?)?,
                b'}' => Value::Dict(Vec::new()),
                b']' => Value::List(Vec::new()),
                b')' => Value::Tuple(Vec::new()),
                b't' => Value::Tuple(self.pop_mark()?),
                b'l' => Value::List(self.pop_mark()?),
                b'd' => Value::Dict(pairs(self.pop_mark()?)?),
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    Value::Tuple(items)
                }
                b'a' => {
                    let item = self.pop()?;
                    extend_list(self.top()?, vec![item])?;
                    continue;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    extend_list(self.top()?, items)?;
                    continue;
                }
                b's' => {
                    let (v, k) = (self.pop()?, self.pop()?);
                    extend_dict(self.top()?, vec![k, v])?;
                    continue;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    extend_dict(self.top()?, items)?;
                    continue;
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => u32::from(self.u8()?),
                        b'r' => u32::from_le_bytes(self.le()?),
                        _ => self.memo.len() as u32,
                    };
                    let value = self.top()?.clone();
                    self.memo.insert(key, value);
                    continue;
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        u32::from(self.u8()?)
                    } else {
                        u32::from_le_bytes(self.le()?)
                    };
                    self.memo
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| format!("pickle memo {key} is not set"))?
                }
                b'c' => {
                    let (module, name) = (self.line()?, self.line()?);
                    Value::Global(resolve(module, name)?)
                }
                0x93 => {
                    let (name, module) = (self.pop()?, self.pop()?);
                    match (module.as_text(), name.as_text()) {
                        (Some(m), Some(n)) => Value::Global(resolve(m, n)?),
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'R' => {
                    let (args, func) = (self.pop()?, self.pop()?);
                    call(func, args)?
                }
                b'b' => {
                    let state = self.pop()?;
                    build(self.top()?, state)?;
                    continue;
                }
                _ => return Err(format!("unsupported pickle opcode 0x{op:02x} at byte {}", self.pos - 1)),
            };
            self.stack.push(value);
        }
    }
}

fn long1(bytes: &[u8]) -> Result<Value, String> {
    if bytes.len() > 8 {
        return Err("pickle integer wider than 64 bits".into());
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let mut buf = [if negative { 0xFF } else { 0 }; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(Value::Int(i64::from_le_bytes(buf)))
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("pickle dict items come in pairs".into());
    }
    let mut it = items.into_iter();
    Ok(std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect())
}

fn extend_list(target: &mut Value, items: Vec<Value>) -> Result<(), String> {
    match target {
        Value::List(list) => {
            list.extend(items);
            Ok(())
        }
        other => Err(format!("APPEND to a {}", other.kind())),
    }
}

fn extend_dict(target: &mut Value, items: Vec<Value>) -> Result<(), String> {
    match target {
        Value::Dict(dict) => {
            dict.extend(pairs(items)?);
            Ok(())
        }
        other => Err(format!("SETITEM on a {}", other.kind())),
    }
}

fn tuple(args: Value) -> Result<Vec<Value>, String> {
    match args {
        Value::Tuple(items) => Ok(items),
        other => Err(format!("call arguments must be a tuple, got {}", other.kind())),
    }
}

/// REDUCE: what the allow-listed callables return.
fn call(func: Value, args: Value) -> Result<Value, String> {
    let Value::Global(global) = func else {
        return Err(format!("cannot call a {}", func.kind()));
    };
    let args = tuple(args)?;
    match (global, args.as_slice()) {
        (Global::Reconstruct, [Value::Global(Global::NdarrayClass), ..]) => Ok(Value::Array(Array {
            dtype: String::new(),
            shape: Vec::new(),
            data: Rc::from(Vec::new()),
        })),
        // Python 2 pickles spell the dtype name as a (byte) str.
        (Global::DtypeClass, [name, ..]) if name.as_text().is_some() => {
            Ok(Value::Dtype(name.as_text().unwrap_or_default().to_string()))
        }
        (Global::CodecsEncode, [Value::Str(s), ..]) => latin1(s),
        (Global::FromBuffer, [Value::Bytes(data), Value::Dtype(dtype), Value::Tuple(shape), ..]) => {
            Ok(Value::Array(Array {
                dtype: dtype.clone(),
                shape: dims(shape)?,
                data: data.clone(),
            }))
        }
        (global, _) => Err(format!("unexpected arguments for {global:?}")),
    }
}

/// `str.encode('latin1')`: each char is one byte.
fn latin1(s: &str) -> Result<Value, String> {
    let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
    Ok(Value::Bytes(
        bytes.ok_or("latin1-encoded bytes contain a char above U+00FF")?.into(),
    ))
}

fn dims(shape: &[Value]) -> Result<Vec<usize>, String> {
    shape
        .iter()
        .map(|d| match d {
            Value::Int(n) if *n >= 0 => Ok(*n as usize),
            other => Err(format!("array dimension is {}", other.kind())),
        })
        .collect()
}

/// BUILD: `ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata))`; a dtype's state
/// (byte order etc.) is irrelevant for the one-byte types we accept.
fn build(target: &mut Value, state: Value) -> Result<(), String> {
    match target {
        Value::Dtype(_) => Ok(()),
        Value::Array(array) => {
            let state = tuple(state)?;
            let [_, Value::Tuple(shape), Value::Dtype(dtype), fortran, Value::Bytes(data)] = state.as_slice() else {
                return Err("unsupported ndarray state (expected (version, shape, dtype, fortran, bytes))".into());
            };
            if matches!(fortran, Value::Bool(true)) {
                return Err("Fortran-ordered arrays are not supported".into());
            }
            *array = Array {
                dtype: dtype.clone(),
                shape: dims(shape)?,
                data: data.clone(),
            };
            Ok(())
        }
        other => Err(format!("BUILD on a {}", other.kind())),
    }
}
