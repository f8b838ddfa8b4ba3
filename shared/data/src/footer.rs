//! A linear-time walk of a Parquet file's footer (Thrift compact protocol) before the parquet
//! crate parses it. parquet 60.1's skipper spends no bytes on a boolean element of a list, so a
//! footer of a few kilobytes can declare lists of billions of booleans, nested, and keep a reader
//! busy for hours (found by `just fuzz data_parquet`). Here every element of a list, set or map
//! takes at least one byte, as the compact protocol says, so a list longer than the bytes left is
//! refused at once, by name, and the walk ends within the footer's length.

use std::io::{Read, Seek, SeekFrom};

/// How deep structures may nest; Parquet's own metadata stays far below.
const MAX_DEPTH: u32 = 64;

/// Checks the footer of the Parquet file `bytes` (the whole file).
pub(crate) fn check_bytes(bytes: &[u8]) -> Result<(), String> {
    let n = bytes.len();
    if n < 12 || &bytes[n - 4..] != b"PAR1" {
        return Ok(()); // not a Parquet tail: the reader says what is wrong
    }
    let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    match (n - 8).checked_sub(len) {
        Some(start) => check_metadata(&bytes[start..n - 8]),
        None => Ok(()),
    }
}

/// [`check_bytes`] for a file, reading only its footer.
pub(crate) fn check_file(file: &std::fs::File) -> Result<(), String> {
    let mut f = file.try_clone().map_err(|e| e.to_string())?;
    let n = f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    if n < 12 {
        return Ok(());
    }
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::End(-8)).map_err(|e| e.to_string())?;
    f.read_exact(&mut tail).map_err(|e| e.to_string())?;
    let len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    if &tail[4..] != b"PAR1" || len + 8 > n {
        return Ok(());
    }
    let mut meta = vec![0; len as usize];
    f.seek(SeekFrom::End(-8 - len as i64)).map_err(|e| e.to_string())?;
    f.read_exact(&mut meta).map_err(|e| e.to_string())?;
    check_metadata(&meta)
}

/// Walks the `FileMetaData` struct.
fn check_metadata(meta: &[u8]) -> Result<(), String> {
    let mut walk = Walk { buf: meta, at: 0 };
    walk.value(STRUCT, 0).map_err(|e| format!("malformed Parquet footer at byte {} of {}: {e}", walk.at, meta.len()))
}

const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

struct Walk<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Walk<'_> {
    fn left(&self) -> usize {
        self.buf.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.at).ok_or("it ends inside a value")?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.left() {
            return Err(format!("a value of {n} bytes runs past its end"));
        }
        self.at += n;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    /// A value of compact type `t`. In a list, set or map (`in_container`) a boolean is one byte.
    fn value(&mut self, t: u8, depth: u32) -> Result<(), String> {
        self.element(t, depth, false)
    }

    fn element(&mut self, t: u8, depth: u32, in_container: bool) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("structures nested deeper than {MAX_DEPTH}"));
        }
        match t {
            BOOL_TRUE | BOOL_FALSE => {
                if in_container {
                    self.skip(1)?;
                }
                Ok(())
            }
            3 => self.skip(1),
            4..=6 => self.varint().map(drop),
            7 => self.skip(8),
            8 => {
                let n = self.varint()?;
                self.skip(usize::try_from(n).map_err(|_| "a binary too long")?)
            }
            LIST | SET => {
                let head = self.byte()?;
                let mut size = u64::from(head >> 4);
                if size == 15 {
                    size = self.varint()?;
                }
                let elem = head & 0x0f;
                self.container(size, 1)?;
                for _ in 0..size {
                    self.element(elem, depth + 1, true)?;
                }
                Ok(())
            }
            MAP => {
                let size = self.varint()?;
                if size == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                self.container(size, 2)?;
                for _ in 0..size {
                    self.element(kv >> 4, depth + 1, true)?;
                    self.element(kv & 0x0f, depth + 1, true)?;
                }
                Ok(())
            }
            STRUCT => loop {
                let head = self.byte()?;
                if head == 0 {
                    return Ok(());
                }
                if head >> 4 == 0 {
                    self.varint()?; // the field id, when not a delta
                }
                self.element(head & 0x0f, depth + 1, false)?;
            },
            13 => self.skip(16),
            other => Err(format!("unknown value type {other}")),
        }
    }

    /// A container of `size` elements of at least `min` bytes each must fit in what is left.
    fn container(&self, size: u64, min: u64) -> Result<(), String> {
        if size.saturating_mul(min) > self.left() as u64 {
            return Err(format!("a list of {size} elements in {} bytes", self.left()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_longer_than_its_bytes_is_refused_at_once() {
        // struct { 1: list<bool> of 2^31 }: three bytes of footer.
        let meta = [0x19, 0xf1, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        let err = check_metadata(&meta).unwrap_err();
        assert!(err.contains("a list of 2147483648 elements"), "{err}");
    }

    #[test]
    fn well_formed_values_pass_and_booleans_in_lists_take_a_byte() {
        // struct { 1: i32 = 5, 2: list<bool> [true, false], 3: binary "ab", 4: bool true } STOP
        let meta = [0x15, 0x0a, 0x19, 0x21, 0x01, 0x02, 0x18, 0x02, b'a', b'b', 0x11, 0x00];
        check_metadata(&meta).unwrap();
        assert!(check_metadata(&meta[..1]).unwrap_err().contains("ends inside"));
    }

    #[test]
    fn nesting_is_bounded() {
        // struct { 1: struct { 1: struct { … } } } 100 deep
        let mut meta = vec![0x1c; 100];
        meta.extend(std::iter::repeat_n(0, 101));
        assert!(check_metadata(&meta).unwrap_err().contains("nested deeper"));
    }
}
