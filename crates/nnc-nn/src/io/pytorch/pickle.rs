//! A small, bounded interpreter for the part of Python's pickle format that `torch.save` uses.
//!
//! It builds an object graph but runs no Python: `GLOBAL` names stay names, and calling one
//! (`REDUCE`, `NEWOBJ`) records the call instead of performing it. Only the handful of
//! callables a state dict needs are understood (`collections.OrderedDict`, `builtins.dict`,
//! `torch._utils._rebuild_parameter*`, which unwrap to their contents); the tensor calls are
//! read by the caller from the recorded [`Obj::Call`]s.
//!
//! Objects live in an arena and refer to each other by index, so shared references (the memo)
//! cost nothing and mutations after memoising are seen through every reference, as in Python.
//! Every object is created by one opcode and every string or byte run is checked against the
//! remaining input before it is allocated, so memory stays proportional to the pickle's size;
//! the arena is also capped at [`MAX_OBJECTS`].

use std::collections::HashMap;

/// Index of an object in the [`Pickle`] arena.
pub(crate) type Id = usize;

/// A pickled object, as far as we understand it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits (its value is not kept).
    BigInt,
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    /// A `module.name` reference (a class or function).
    Global {
        module: String,
        name: String,
    },
    /// What `persistent_load` would be called with (torch: the storage descriptor tuple).
    PersId(Id),
    /// A call we did not perform: `func(*args)`.
    Call {
        func: Id,
        args: Id,
    },
    /// Anything else (sets, objects we only see being mutated); its contents are dropped.
    Opaque,
}

/// Why a pickle could not be interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleError {
    /// Byte offset of the opcode concerned.
    pub offset: usize,
    /// What went wrong.
    pub what: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pickle byte {}: {}", self.offset, self.what)
    }
}

/// An interpreted pickle: the arena and the object `STOP` returned.
#[derive(Debug)]
pub(crate) struct Pickle {
    objs: Vec<Obj>,
    /// The top-level object.
    pub root: Id,
}

impl Pickle {
    /// The object at `id` (an id from this pickle; out-of-range ids read as `None`).
    pub fn get(&self, id: Id) -> &Obj {
        self.objs.get(id).unwrap_or(&Obj::None)
    }

    /// Number of objects in the arena.
    pub fn len(&self) -> usize {
        self.objs.len()
    }

    /// The string at `id`, if it is one.
    pub fn str(&self, id: Id) -> Option<&str> {
        match self.get(id) {
            Obj::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer at `id`, if it is one (`bool`s count, as in Python).
    pub fn int(&self, id: Id) -> Option<i64> {
        match self.get(id) {
            Obj::Int(v) => Some(*v),
            Obj::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items of the tuple or list at `id`.
    pub fn seq(&self, id: Id) -> Option<&[Id]> {
        match self.get(id) {
            Obj::Tuple(v) | Obj::List(v) => Some(v),
            _ => None,
        }
    }

    /// `(module, name)` of the global at `id`.
    pub fn global(&self, id: Id) -> Option<(&str, &str)> {
        match self.get(id) {
            Obj::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }
}

// Opcodes (Python's `pickletools` names).
pub(super) const MARK: u8 = b'(';
pub(super) const STOP: u8 = b'.';
pub(super) const POP: u8 = b'0';
pub(super) const POP_MARK: u8 = b'1';
pub(super) const DUP: u8 = b'2';
pub(super) const INT: u8 = b'I';
pub(super) const BININT: u8 = b'J';
pub(super) const BININT1: u8 = b'K';
pub(super) const BININT2: u8 = b'M';
pub(super) const NONE: u8 = b'N';
pub(super) const PERSID: u8 = b'P';
pub(super) const BINPERSID: u8 = b'Q';
pub(super) const REDUCE: u8 = b'R';
pub(super) const BINSTRING: u8 = b'T';
pub(super) const SHORT_BINSTRING: u8 = b'U';
pub(super) const BINUNICODE: u8 = b'X';
pub(super) const APPEND: u8 = b'a';
pub(super) const BUILD: u8 = b'b';
pub(super) const GLOBAL: u8 = b'c';
pub(super) const DICT: u8 = b'd';
pub(super) const EMPTY_DICT: u8 = b'}';
pub(super) const APPENDS: u8 = b'e';
pub(super) const GET: u8 = b'g';
pub(super) const BINGET: u8 = b'h';
pub(super) const LONG_BINGET: u8 = b'j';
pub(super) const LIST: u8 = b'l';
pub(super) const EMPTY_LIST: u8 = b']';
pub(super) const PUT: u8 = b'p';
pub(super) const BINPUT: u8 = b'q';
pub(super) const LONG_BINPUT: u8 = b'r';
pub(super) const SETITEM: u8 = b's';
pub(super) const TUPLE: u8 = b't';
pub(super) const EMPTY_TUPLE: u8 = b')';
pub(super) const SETITEMS: u8 = b'u';
pub(super) const BINFLOAT: u8 = b'G';
pub(super) const PROTO: u8 = 0x80;
pub(super) const NEWOBJ: u8 = 0x81;
pub(super) const TUPLE1: u8 = 0x85;
pub(super) const TUPLE2: u8 = 0x86;
pub(super) const TUPLE3: u8 = 0x87;
pub(super) const NEWTRUE: u8 = 0x88;
pub(super) const NEWFALSE: u8 = 0x89;
pub(super) const LONG1: u8 = 0x8a;
pub(super) const LONG4: u8 = 0x8b;
pub(super) const BINBYTES: u8 = b'B';
pub(super) const SHORT_BINBYTES: u8 = b'C';
pub(super) const SHORT_BINUNICODE: u8 = 0x8c;
pub(super) const BINUNICODE8: u8 = 0x8d;
pub(super) const BINBYTES8: u8 = 0x8e;
pub(super) const EMPTY_SET: u8 = 0x8f;
pub(super) const ADDITEMS: u8 = 0x90;
pub(super) const FROZENSET: u8 = 0x91;
pub(super) const NEWOBJ_EX: u8 = 0x92;
pub(super) const STACK_GLOBAL: u8 = 0x93;
pub(super) const MEMOIZE: u8 = 0x94;
pub(super) const FRAME: u8 = 0x95;
pub(super) const BYTEARRAY8: u8 = 0x96;

/// Most objects one pickle may create (each opcode creates at most one).
pub(crate) const MAX_OBJECTS: usize = 1 << 23;

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    /// Offset of the opcode being run (for errors).
    op_at: usize,
    objs: Vec<Obj>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

/// Interprets a pickle (protocols 2 to 5, plus the text forms of `INT`, `GET`, `PUT`).
pub(crate) fn load(input: &[u8]) -> Result<Pickle, PickleError> {
    load_with_limit(input, MAX_OBJECTS)
}

fn load_with_limit(input: &[u8], max_objects: usize) -> Result<Pickle, PickleError> {
    let mut m = Machine {
        input,
        pos: 0,
        op_at: 0,
        objs: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        m.op_at = m.pos;
        let op = m.u8()?;
        if op == STOP {
            let root = m.pop()?;
            return Ok(Pickle { objs: m.objs, root });
        }
        m.step(op)?;
        if m.objs.len() > max_objects {
            return Err(m.err(format!("more than {max_objects} objects")));
        }
    }
}

impl Machine<'_> {
    fn err(&self, what: impl Into<String>) -> PickleError {
        PickleError {
            offset: self.op_at,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.input.len())
            .ok_or_else(|| self.err(format!("needs {n} more bytes than the pickle holds")))?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.array::<1>()?[0])
    }

    /// A length argument, checked against the remaining input.
    fn len(&mut self, raw: u64) -> Result<usize, PickleError> {
        let remaining = (self.input.len() - self.pos) as u64;
        if raw > remaining {
            return Err(self.err(format!(
                "length {raw} runs past the end of the pickle ({remaining} bytes left)"
            )));
        }
        Ok(raw as usize)
    }

    fn line(&mut self) -> Result<&str, PickleError> {
        let rest = &self.input[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("unterminated text argument"))?;
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| self.err("text argument is not UTF-8"))
    }

    fn new_obj(&mut self, obj: Obj) -> Id {
        self.objs.push(obj);
        self.objs.len() - 1
    }

    fn push(&mut self, obj: Obj) {
        let id = self.new_obj(obj);
        self.stack.push(id);
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&id) if self.stack.len() > floor => Ok(id),
            _ => Err(self.err("stack underflow")),
        }
    }

    /// Pops everything above the last mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let at = self.marks.pop().ok_or_else(|| self.err("no mark"))?;
        Ok(self.stack.split_off(at.min(self.stack.len())))
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn string(&mut self, n: u64, utf8: bool) -> Result<(), PickleError> {
        let n = self.len(n)?;
        let offset = self.op_at;
        let bytes = self.take(n)?;
        let s = if utf8 {
            std::str::from_utf8(bytes)
                .map_err(|_| PickleError {
                    offset,
                    what: "string is not UTF-8".into(),
                })?
                .to_string()
        } else {
            // Python 2 `str`: torch decodes these as Latin-1.
            bytes.iter().map(|&b| char::from(b)).collect()
        };
        self.push(Obj::Str(s));
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> Result<(), PickleError> {
        let n = self.len(n)?;
        let b = self.take(n)?.to_vec();
        self.push(Obj::Bytes(b));
        Ok(())
    }

    fn long(&mut self, n: usize) -> Result<(), PickleError> {
        let n = self.len(n as u64)?;
        let bytes = self.take(n)?;
        let obj = match bytes.len() {
            0 => Obj::Int(0),
            1..=8 => {
                // Little-endian two's complement, sign-extended.
                let fill = if bytes[bytes.len() - 1] & 0x80 != 0 {
                    0xff
                } else {
                    0
                };
                let mut a = [fill; 8];
                a[..bytes.len()].copy_from_slice(bytes);
                Obj::Int(i64::from_le_bytes(a))
            }
            _ => Obj::BigInt,
        };
        self.push(obj);
        Ok(())
    }

    /// `func(*args)` for the few callables we understand; a recorded call otherwise.
    fn call(&mut self, func: Id, args: Id) -> Obj {
        let (module, name) = match &self.objs[func] {
            Obj::Global { module, name } => (module.as_str(), name.as_str()),
            _ => return Obj::Call { func, args },
        };
        match (module, name) {
            ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
                Obj::Dict(Vec::new())
            }
            // `nn.Parameter`s pickle as (tensor, requires_grad, hooks[, state]): keep the tensor.
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                match &self.objs[args] {
                    Obj::Tuple(a) if !a.is_empty() => self.objs[a[0]].clone(),
                    _ => Obj::Call { func, args },
                }
            }
            _ => Obj::Call { func, args },
        }
    }

    fn step(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            PROTO => {
                let v = self.u8()?;
                if !(2..=5).contains(&v) {
                    return Err(self.err(format!("pickle protocol {v} is not supported")));
                }
            }
            FRAME => {
                self.take(8)?;
            }
            MARK => self.marks.push(self.stack.len()),
            POP => {
                if self.marks.last() == Some(&self.stack.len()) {
                    // Python pops the mark when it is on top.
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            POP_MARK => {
                self.pop_mark()?;
            }
            DUP => {
                let id = self.top()?;
                self.stack.push(id);
            }
            NONE => self.push(Obj::None),
            NEWTRUE => self.push(Obj::Bool(true)),
            NEWFALSE => self.push(Obj::Bool(false)),
            INT => {
                let text = self.line()?.trim().to_string();
                let obj = match text.as_str() {
                    "00" => Obj::Bool(false),
                    "01" => Obj::Bool(true),
                    t => Obj::Int(
                        t.parse()
                            .map_err(|_| self.err(format!("bad INT argument {t:?}")))?,
                    ),
                };
                self.push(obj);
            }
            BININT => {
                let v = i32::from_le_bytes(self.array()?);
                self.push(Obj::Int(i64::from(v)));
            }
            BININT1 => {
                let v = self.u8()?;
                self.push(Obj::Int(i64::from(v)));
            }
            BININT2 => {
                let v = u16::from_le_bytes(self.array()?);
                self.push(Obj::Int(i64::from(v)));
            }
            LONG1 => {
                let n = self.u8()?;
                self.long(usize::from(n))?;
            }
            LONG4 => {
                let n = i32::from_le_bytes(self.array()?);
                let n = usize::try_from(n).map_err(|_| self.err("negative LONG4 length"))?;
                self.long(n)?;
            }
            BINFLOAT => {
                let v = f64::from_be_bytes(self.array()?);
                self.push(Obj::Float(v));
            }
            BINUNICODE => {
                let n = u32::from_le_bytes(self.array()?);
                self.string(u64::from(n), true)?;
            }
            SHORT_BINUNICODE => {
                let n = self.u8()?;
                self.string(u64::from(n), true)?;
            }
            BINUNICODE8 => {
                let n = u64::from_le_bytes(self.array()?);
                self.string(n, true)?;
            }
            BINSTRING => {
                let n = i32::from_le_bytes(self.array()?);
                let n = u64::try_from(n).map_err(|_| self.err("negative BINSTRING length"))?;
                self.string(n, false)?;
            }
            SHORT_BINSTRING => {
                let n = self.u8()?;
                self.string(u64::from(n), false)?;
            }
            BINBYTES => {
                let n = u32::from_le_bytes(self.array()?);
                self.bytes(u64::from(n))?;
            }
            SHORT_BINBYTES => {
                let n = self.u8()?;
                self.bytes(u64::from(n))?;
            }
            BINBYTES8 | BYTEARRAY8 => {
                let n = u64::from_le_bytes(self.array()?);
                self.bytes(n)?;
            }
            EMPTY_TUPLE => self.push(Obj::Tuple(Vec::new())),
            TUPLE => {
                let items = self.pop_mark()?;
                self.push(Obj::Tuple(items));
            }
            TUPLE1 | TUPLE2 | TUPLE3 => {
                let n = usize::from(op - TUPLE1 + 1);
                let mut items = vec![0; n];
                for slot in items.iter_mut().rev() {
                    *slot = self.pop()?;
                }
                self.push(Obj::Tuple(items));
            }
            EMPTY_LIST => self.push(Obj::List(Vec::new())),
            LIST => {
                let items = self.pop_mark()?;
                self.push(Obj::List(items));
            }
            APPEND => {
                let item = self.pop()?;
                let list = self.top()?;
                if let Obj::List(v) = &mut self.objs[list] {
                    v.push(item);
                }
            }
            APPENDS => {
                let items = self.pop_mark()?;
                let list = self.top()?;
                if let Obj::List(v) = &mut self.objs[list] {
                    v.extend(items);
                }
            }
            EMPTY_DICT => self.push(Obj::Dict(Vec::new())),
            DICT => {
                let items = self.pop_mark()?;
                let pairs = pairs(&items).ok_or_else(|| self.err("odd number of dict items"))?;
                self.push(Obj::Dict(pairs));
            }
            SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                let dict = self.top()?;
                if let Obj::Dict(v) = &mut self.objs[dict] {
                    v.push((key, value));
                }
            }
            SETITEMS => {
                let items = self.pop_mark()?;
                let new = pairs(&items).ok_or_else(|| self.err("odd number of dict items"))?;
                let dict = self.top()?;
                if let Obj::Dict(v) = &mut self.objs[dict] {
                    v.extend(new);
                }
            }
            EMPTY_SET => self.push(Obj::Opaque),
            ADDITEMS => {
                self.pop_mark()?;
                self.top()?;
            }
            FROZENSET => {
                self.pop_mark()?;
                self.push(Obj::Opaque);
            }
            GLOBAL => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                self.push(Obj::Global { module, name });
            }
            STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (&self.objs[module], &self.objs[name]) {
                    (Obj::Str(m), Obj::Str(n)) => {
                        let g = Obj::Global {
                            module: m.clone(),
                            name: n.clone(),
                        };
                        self.push(g);
                    }
                    _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                }
            }
            REDUCE | NEWOBJ => {
                let args = self.pop()?;
                let func = self.pop()?;
                let obj = self.call(func, args);
                self.push(obj);
            }
            NEWOBJ_EX => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let func = self.pop()?;
                let obj = self.call(func, args);
                self.push(obj);
            }
            BUILD => {
                // `obj.__setstate__(state)`: state dicts carry only `_metadata` here.
                self.pop()?;
                self.top()?;
            }
            BINPERSID => {
                let pid = self.pop()?;
                self.push(Obj::PersId(pid));
            }
            PERSID => {
                let pid = self.line()?.to_string();
                let id = self.new_obj(Obj::Str(pid));
                self.push(Obj::PersId(id));
            }
            BINGET => {
                let k = self.u8()?;
                self.memo_get(u64::from(k))?;
            }
            LONG_BINGET => {
                let k = u32::from_le_bytes(self.array()?);
                self.memo_get(u64::from(k))?;
            }
            GET => {
                let k = self.line()?.trim().to_string();
                let k = k.parse().map_err(|_| self.err("bad GET argument"))?;
                self.memo_get(k)?;
            }
            BINPUT => {
                let k = self.u8()?;
                self.memo_put(u64::from(k))?;
            }
            LONG_BINPUT => {
                let k = u32::from_le_bytes(self.array()?);
                self.memo_put(u64::from(k))?;
            }
            PUT => {
                let k = self.line()?.trim().to_string();
                let k = k.parse().map_err(|_| self.err("bad PUT argument"))?;
                self.memo_put(k)?;
            }
            MEMOIZE => {
                let k = self.memo.len() as u64;
                self.memo_put(k)?;
            }
            other => {
                return Err(self.err(format!("unsupported pickle opcode 0x{other:02x}")));
            }
        }
        Ok(())
    }
}

fn pairs(items: &[Id]) -> Option<Vec<(Id, Id)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    Some(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_protocol_2_dict() {
        // pickle.dumps({'a': 1, 'b': [True, None, 2.5], 'c': (-3, 70000, 2**70)}, protocol=2)
        let bytes: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(\x88NG@\x04\x00\x00\x00\x00\x00\x00eX\x01\x00\x00\x00cq\x04J\xfd\xff\xff\xffJp\x11\x01\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x87q\x05u.";
        let p = load(bytes).unwrap();
        let Obj::Dict(items) = p.get(p.root) else {
            panic!("not a dict: {:?}", p.get(p.root))
        };
        assert_eq!(items.len(), 3);
        assert_eq!(p.str(items[0].0), Some("a"));
        assert_eq!(p.int(items[0].1), Some(1));
        let list = p.seq(items[1].1).unwrap();
        assert_eq!(p.get(list[0]), &Obj::Bool(true));
        assert_eq!(p.get(list[1]), &Obj::None);
        assert_eq!(p.get(list[2]), &Obj::Float(2.5));
        let t = p.seq(items[2].1).unwrap();
        assert_eq!(p.int(t[0]), Some(-3));
        assert_eq!(p.int(t[1]), Some(70000));
        assert_eq!(p.get(t[2]), &Obj::BigInt);
    }

    #[test]
    fn memo_shares_and_sees_later_mutation() {
        // l = []; d = {'x': l, 'y': l}; l.append(1), written by hand:
        // PROTO 2, EMPTY_DICT, MARK, 'x', EMPTY_LIST, BINPUT 0, 'y', BINGET 0, SETITEMS,
        // then BINGET 0, BININT1 1, APPEND, POP, STOP.
        let bytes: &[u8] =
            b"\x80\x02}(X\x01\x00\x00\x00x]q\x00X\x01\x00\x00\x00yh\x00uh\x00K\x01a0.";
        let p = load(bytes).unwrap();
        let Obj::Dict(items) = p.get(p.root) else {
            panic!()
        };
        assert_eq!(items[0].1, items[1].1);
        assert_eq!(p.seq(items[1].1).unwrap().len(), 1);
    }

    #[test]
    fn object_count_is_capped() {
        let mut bytes = b"\x80\x02".to_vec();
        bytes.extend(std::iter::repeat_n(b'N', 1001));
        bytes.push(b'.');
        let err = load_with_limit(&bytes, 1000).unwrap_err();
        assert!(err.what.contains("1000 objects"), "{err}");
        assert_eq!(err.offset, 1002);
        assert!(load_with_limit(&bytes[..1002], 1000).is_err()); // no STOP
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x80",
            b"\x80\x02",
            b"\x80\x09.",
            b"\x80\x02X\xff\xff\xff\xff",
            b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xffab",
            b"\x80\x02h\x05.",
            b"\x80\x02t.",
            b"\x80\x02(K\x01u.",
            b"\x80\x02cfoo",
            b"\x80\x02\xff.",
            b"\x80\x02.",
            b"\x80\x02\x8b\xff\xff\xff\xff",
        ];
        for &c in cases {
            assert!(load(c).is_err(), "{c:?}");
        }
        // Every prefix of a valid pickle fails cleanly.
        let good: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01u.";
        for n in 0..good.len() {
            assert!(load(&good[..n]).is_err());
        }
        assert!(load(good).is_ok());
    }
}
