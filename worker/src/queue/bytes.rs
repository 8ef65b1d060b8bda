//! The little-endian, length-prefixed fields the queue's binary records are made of (the
//! journal's records and the stored events' headers): one writer and one reader for both.

/// Length written for an absent optional string.
pub(super) const ABSENT: u32 = u32::MAX;

/// Append a length as a `u32`.
pub(super) fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

/// Append a string: its length, then its bytes.
pub(super) fn put_str(out: &mut Vec<u8>, text: &str) {
    put_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// Append an optional string; an absent one is [`ABSENT`] alone.
pub(super) fn put_opt(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => put_str(out, text),
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Reads what the `put_*` functions wrote; every read fails on a record cut short.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("record cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    pub(super) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }

    pub(super) fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }

    /// A length-prefixed field; `None` for [`ABSENT`].
    pub(super) fn bytes(&mut self) -> Result<Option<&'a [u8]>, String> {
        match self.u32()? {
            ABSENT => Ok(None),
            len => self.take(len as usize).map(Some),
        }
    }

    pub(super) fn opt(&mut self) -> Result<Option<String>, String> {
        self.bytes()?
            .map(|b| String::from_utf8(b.to_vec()).map_err(|_| "not UTF-8".into()))
            .transpose()
    }

    pub(super) fn str(&mut self) -> Result<String, String> {
        self.opt()?.ok_or_else(|| "a required string is absent".into())
    }

    /// Everything not read yet.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.0
    }
}
