//! Bounds-checked little-endian reads: every read of the file goes through here, so malformed
//! input becomes a `Truncated` error naming what was being read, never a panic.

use crate::ErrorKind;

/// A position in a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Self {
        Self { data, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes after the position.
    pub(crate) fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes; `what` names them in the error when fewer are left.
    pub(crate) fn take(
        &mut self,
        n: u64,
        what: impl FnOnce() -> String,
    ) -> Result<&'a [u8], ErrorKind> {
        let left = self.left();
        match usize::try_from(n) {
            Ok(n) if n <= left => {
                let bytes = &self.data[self.pos..self.pos + n];
                self.pos += n;
                Ok(bytes)
            }
            _ => Err(ErrorKind::truncated(what(), n, left)),
        }
    }

    /// The bytes up to the next newline, which is consumed too.
    pub(crate) fn line(&mut self, what: impl FnOnce() -> String) -> Result<&'a [u8], ErrorKind> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(len) => {
                self.pos += len + 1;
                Ok(&rest[..len])
            }
            None => Err(ErrorKind::truncated(
                what(),
                rest.len() as u64 + 1,
                rest.len(),
            )),
        }
    }

    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], ErrorKind> {
        let bytes = self.take(N as u64, what)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    pub(crate) fn u8(&mut self, what: impl FnOnce() -> String) -> Result<u8, ErrorKind> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: impl FnOnce() -> String) -> Result<u16, ErrorKind> {
        self.array(what).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, ErrorKind> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, ErrorKind> {
        self.array(what).map(u64::from_le_bytes)
    }

    pub(crate) fn i32(&mut self, what: impl FnOnce() -> String) -> Result<i32, ErrorKind> {
        self.array(what).map(i32::from_le_bytes)
    }

    /// pickle's BINFLOAT is the one big-endian number of the formats read here.
    pub(crate) fn f64_be(&mut self, what: impl FnOnce() -> String) -> Result<f64, ErrorKind> {
        self.array(what).map(f64::from_be_bytes)
    }
}

/// The first bytes of `data` in hex, for "found ..." in errors.
pub(crate) fn hex_prefix(data: &[u8]) -> String {
    if data.is_empty() {
        return "nothing (the file is empty)".to_owned();
    }
    let shown: Vec<String> = data.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let more = if data.len() > 8 { " ..." } else { "" };
    format!("bytes {}{more}", shown.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_reports_what_was_cut_short() {
        let data = [1u8, 2, 3, 4, 5, 6, 7];
        let mut reader = Reader::new(&data, 1);
        assert_eq!(reader.u16(|| "a".into()).unwrap(), 0x0302);
        assert_eq!(reader.u32(|| "b".into()).unwrap(), 0x0706_0504);
        assert_eq!(reader.left(), 0);
        let error = reader.u8(|| "the next byte".into()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "truncated: the next byte needs 1 bytes, 0 left"
        );
        let mut reader = Reader::new(&data, 10);
        assert!(reader.take(u64::MAX, || "huge".into()).is_err());
        assert_eq!(hex_prefix(&[]), "nothing (the file is empty)");
        assert_eq!(hex_prefix(&[0xab; 9]), "bytes ab ab ab ab ab ab ab ab ...");
    }
}
