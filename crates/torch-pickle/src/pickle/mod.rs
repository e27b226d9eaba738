//! A restricted unpickler, in the spirit of `torch.load(weights_only=True)`
//! (torch/_weights_only_unpickler.py): the opcodes Python's pickler writes for a dict of
//! tensors (protocol 2, as `torch.save` writes by default, plus the framing and short-string
//! opcodes of protocol 4) and the globals of [`objects::Global`]; any other opcode or global
//! is an error naming it. Nothing is ever called but the fixed handful of constructors here,
//! so a hostile file cannot run code.

mod call;
mod objects;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::ErrorKind;
use crate::bytes::Reader;
use objects::Global;
pub(crate) use objects::{Arena, Object, StorageDecl, TensorSpec, Value};

/// What a pickle built: its result, the objects it refers to, and the storages its
/// persistent ids declared (in first-use order).
#[derive(Debug)]
pub(crate) struct Unpickled {
    pub(crate) root: Value,
    pub(crate) arena: Arena,
    pub(crate) storages: Vec<StorageDecl>,
    storage_keys: HashMap<String, usize>,
    /// The offset just after the pickle's STOP (where the legacy format continues).
    pub(crate) end: usize,
}

impl Unpickled {
    /// The storage declared with `key`.
    pub(crate) fn storage_index(&self, key: &str) -> Option<usize> {
        self.storage_keys.get(key).copied()
    }
}

/// Runs the pickle that starts at `data[start]`. `pickle` names it in errors
/// (`"data.pkl"`, `"the legacy magic number"`), with offsets counted from `start`.
pub(crate) fn unpickle(
    data: &[u8],
    start: usize,
    pickle: &'static str,
) -> Result<Unpickled, ErrorKind> {
    let mut machine = Machine {
        input: Reader::new(data, start),
        start,
        pickle,
        op_offset: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Arena::default(),
        storages: Vec::new(),
        storage_keys: HashMap::new(),
    };
    let root = machine.run()?;
    Ok(Unpickled {
        root,
        arena: machine.arena,
        storages: machine.storages,
        storage_keys: machine.storage_keys,
        end: machine.input.pos(),
    })
}

// The opcodes of pickletools, protocol 2 and the cheap protocol 4 ones.
const PROTO: u8 = 0x80;
const FRAME: u8 = 0x95;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const EMPTY_TUPLE: u8 = b')';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const EMPTY_LIST: u8 = b']';
const APPEND: u8 = b'a';
const APPENDS: u8 = b'e';
const EMPTY_DICT: u8 = b'}';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const BINUNICODE: u8 = b'X';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE8: u8 = 0x8d;
const SHORT_BINSTRING: u8 = b'U';
const BINSTRING: u8 = b'T';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const MEMOIZE: u8 = 0x94;
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const GLOBAL: u8 = b'c';
const STACK_GLOBAL: u8 = 0x93;
const BINPERSID: u8 = b'Q';
const REDUCE: u8 = b'R';
const BUILD: u8 = b'b';

/// Pickle's stack machine (pickle.py `_Unpickler`), restricted.
struct Machine<'a> {
    input: Reader<'a>,
    start: usize,
    pickle: &'static str,
    /// Offset (from `start`) of the opcode being run, for errors.
    op_offset: usize,
    stack: Vec<Value>,
    /// Stack heights at each open MARK (pickle.py's metastack).
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Arena,
    storages: Vec<StorageDecl>,
    storage_keys: HashMap<String, usize>,
}

impl Machine<'_> {
    fn run(&mut self) -> Result<Value, ErrorKind> {
        loop {
            self.op_offset = self.input.pos() - self.start;
            let pickle = self.pickle;
            let opcode = self
                .input
                .u8(|| format!("{pickle}: the next opcode (no STOP yet)"))?;
            if opcode == STOP {
                return self.pop();
            }
            self.step(opcode)?;
        }
    }

    fn step(&mut self, opcode: u8) -> Result<(), ErrorKind> {
        match opcode {
            PROTO => {
                let protocol = self.input.u8(self.arg(opcode))?;
                if protocol > 5 {
                    return Err(self.error("pickle protocol 2 to 5", format!("{protocol}")));
                }
            }
            FRAME => {
                // Protocol 4 frames only group opcodes; the whole input is in memory.
                self.input.u64(self.arg(opcode))?;
            }
            MARK => self.marks.push(self.stack.len()),
            TUPLE => {
                let items = self.pop_mark()?;
                self.push(Object::Tuple(items));
            }
            EMPTY_TUPLE | TUPLE1 | TUPLE2 | TUPLE3 => {
                let len = match opcode {
                    EMPTY_TUPLE => 0,
                    TUPLE1 => 1,
                    TUPLE2 => 2,
                    _ => 3,
                };
                let items = self.pop_n(len)?;
                self.push(Object::Tuple(items));
            }
            EMPTY_LIST => self.push(Object::List(Vec::new())),
            EMPTY_DICT => self.push(Object::Dict(Vec::new())),
            APPEND | APPENDS | SETITEM | SETITEMS => self.add_items(opcode)?,
            NONE => self.stack.push(Value::None),
            NEWTRUE => self.stack.push(Value::Bool(true)),
            NEWFALSE => self.stack.push(Value::Bool(false)),
            BININT | BININT1 | BININT2 | LONG1 | BINFLOAT => self.number(opcode)?,
            BINUNICODE | SHORT_BINUNICODE | BINUNICODE8 | SHORT_BINSTRING | BINSTRING => {
                self.string(opcode)?;
            }
            BINPUT | LONG_BINPUT | MEMOIZE | BINGET | LONG_BINGET => self.memo(opcode)?,
            GLOBAL => {
                let module = self.line(opcode)?.to_owned();
                let name = self.line(opcode)?;
                let global = Global::resolve(&module, name)?;
                self.push(Object::Global(global));
            }
            STACK_GLOBAL => {
                let name = self.pop_str("the global's name (STACK_GLOBAL)")?;
                let module = self.pop_str("the global's module (STACK_GLOBAL)")?;
                let global = Global::resolve(&module, &name)?;
                self.push(Object::Global(global));
            }
            BINPERSID => self.persistent_load()?,
            REDUCE => self.reduce()?,
            BUILD => self.build()?,
            _ => {
                return Err(ErrorKind::UnsupportedOpcode {
                    pickle: self.pickle,
                    offset: self.op_offset,
                    opcode,
                });
            }
        }
        Ok(())
    }

    /// Names an opcode's argument for truncation errors.
    fn arg(&self, opcode: u8) -> impl FnOnce() -> String + use<> {
        let (pickle, offset) = (self.pickle, self.op_offset);
        move || format!("{pickle}: the argument of opcode {opcode:#04x} at byte {offset}")
    }

    fn add_items(&mut self, opcode: u8) -> Result<(), ErrorKind> {
        let items = match opcode {
            APPEND | SETITEM => self.pop_n(if opcode == APPEND { 1 } else { 2 })?,
            _ => self.pop_mark()?,
        };
        let target = self.top()?;
        let pickle = self.pickle;
        let offset = self.op_offset;
        match (opcode, self.arena.get_mut(target)) {
            (APPEND | APPENDS, Some(Object::List(list))) => list.extend(items),
            (SETITEM | SETITEMS, Some(Object::Dict(dict))) if items.len() % 2 == 0 => {
                dict.extend(items.chunks_exact(2).map(|pair| (pair[0], pair[1])));
            }
            (SETITEM | SETITEMS, Some(Object::Dict(_))) => {
                return Err(ErrorKind::Pickle {
                    pickle,
                    offset,
                    expected: "key, value pairs (SETITEMS)".to_owned(),
                    found: format!("{} values", items.len()),
                });
            }
            _ => {
                let expected = if matches!(opcode, APPEND | APPENDS) {
                    "a list to append to"
                } else {
                    "a dict to set items of"
                };
                return Err(self.unexpected(expected, target));
            }
        }
        Ok(())
    }

    fn number(&mut self, opcode: u8) -> Result<(), ErrorKind> {
        let what = self.arg(opcode);
        let value = match opcode {
            BININT => Value::Int(self.input.i32(what)?.into()),
            BININT1 => Value::Int(self.input.u8(what)?.into()),
            BININT2 => Value::Int(self.input.u16(what)?.into()),
            BINFLOAT => Value::Float(self.input.f64_be(what)?),
            _ => {
                let n = self.input.u8(self.arg(opcode))?;
                let bytes = self.input.take(u64::from(n), what)?;
                Value::Int(self.long(bytes)?)
            }
        };
        self.stack.push(value);
        Ok(())
    }

    /// LONG1's little-endian two's complement integer, up to 16 bytes.
    fn long(&self, bytes: &[u8]) -> Result<i128, ErrorKind> {
        if bytes.len() > 16 {
            return Err(self.error(
                "an integer of at most 16 bytes",
                format!("{} bytes", bytes.len()),
            ));
        }
        let negative = bytes.last().is_some_and(|byte| byte & 0x80 != 0);
        let mut wide = [if negative { 0xff } else { 0 }; 16];
        wide[..bytes.len()].copy_from_slice(bytes);
        Ok(i128::from_le_bytes(wide))
    }

    fn string(&mut self, opcode: u8) -> Result<(), ErrorKind> {
        let what = self.arg(opcode);
        let len = match opcode {
            BINUNICODE => u64::from(self.input.u32(self.arg(opcode))?),
            BINUNICODE8 => self.input.u64(self.arg(opcode))?,
            BINSTRING => {
                let len = self.input.i32(self.arg(opcode))?;
                u64::try_from(len).map_err(|_| self.error("a string length", format!("{len}")))?
            }
            _ => u64::from(self.input.u8(self.arg(opcode))?),
        };
        let bytes = self.input.take(len, what)?;
        // torch.load decodes Python 2 byte strings as UTF-8, as here.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| self.error("UTF-8 text", format!("invalid UTF-8 ({e})")))?;
        self.push(Object::Str(text.to_owned()));
        Ok(())
    }

    fn memo(&mut self, opcode: u8) -> Result<(), ErrorKind> {
        let index = match opcode {
            BINPUT | BINGET => u32::from(self.input.u8(self.arg(opcode))?),
            MEMOIZE => u32::try_from(self.memo.len()).unwrap_or(u32::MAX),
            _ => self.input.u32(self.arg(opcode))?,
        };
        if matches!(opcode, BINGET | LONG_BINGET) {
            let value = *self.memo.get(&index).ok_or_else(|| {
                self.error(
                    "a memo index stored earlier (BINPUT)",
                    format!("index {index}, never stored"),
                )
            })?;
            self.stack.push(value);
        } else {
            let top = self.top()?;
            self.memo.insert(index, top);
        }
        Ok(())
    }

    /// GLOBAL's newline-terminated module or name.
    fn line(&mut self, opcode: u8) -> Result<&str, ErrorKind> {
        let line = self.input.line(self.arg(opcode))?;
        std::str::from_utf8(line)
            .map_err(|_| self.error("an ASCII module or name", "non-UTF-8 bytes".to_owned()))
    }

    fn push(&mut self, object: Object) {
        let value = self.arena.push(object);
        self.stack.push(value);
    }

    /// The lowest stack height the current MARK allows popping to.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn top(&self) -> Result<Value, ErrorKind> {
        match self.stack.last() {
            Some(value) if self.stack.len() > self.floor() => Ok(*value),
            _ => Err(self.error("a value on the stack", "none".to_owned())),
        }
    }

    fn pop(&mut self) -> Result<Value, ErrorKind> {
        let value = self.top()?;
        self.stack.pop();
        Ok(value)
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, ErrorKind> {
        let available = self.stack.len() - self.floor();
        if available < n {
            return Err(self.error(&format!("{n} values on the stack"), format!("{available}")));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, ErrorKind> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.error("a MARK before this opcode", "none".to_owned()))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn pop_str(&mut self, expected: &str) -> Result<String, ErrorKind> {
        let value = self.pop()?;
        match self.arena.str(value) {
            Some(text) => Ok(text.to_owned()),
            None => Err(self.unexpected(expected, value)),
        }
    }

    fn error(&self, expected: &str, found: String) -> ErrorKind {
        ErrorKind::Pickle {
            pickle: self.pickle,
            offset: self.op_offset,
            expected: expected.to_owned(),
            found,
        }
    }

    fn unexpected(&self, expected: &str, found: Value) -> ErrorKind {
        self.error(expected, self.arena.describe(found))
    }
}
