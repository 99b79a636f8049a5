//! CSV rows of a cost report, split without copying: the fields of each row as spans of one
//! reused buffer, so that a line item of 130 columns costs a scan and 130 stores, and only
//! the handful of fields the summary reads are ever looked at.
//!
//! The scan works on 64-byte blocks (SWAR, portable, no `unsafe`): one bit per byte for
//! quotes, commas and line feeds; a prefix XOR of the quote bits gives the bytes inside quoted
//! fields (a doubled quote `""` toggles twice, so it needs no special case), and commas and
//! line feeds outside them end fields and rows. This is the structural-index idea of
//! simdjson applied to RFC 4180.
//!
//! What it accepts is what cost reports write and what the `csv` crate reads: quoted fields
//! with commas, doubled quotes and line breaks; CRLF or LF; a last line without a line end;
//! blank lines (skipped). A field is handed out trimmed of spaces and its surrounding quotes,
//! with doubled quotes undone. Memory is one buffer (256 KiB, larger only for a longer row, up
//! to [`Rows::max_row`]: a report is input from a bucket, and one unclosed quote would make
//! the rest of a file one row).

use std::borrow::Cow;
use std::io::{self, Read};

const BUFFER: usize = 256 << 10;
const BLOCK: usize = 64;

/// The longest row read unless [`Rows::max_row`] says otherwise: 1 MiB (a cost report's line
/// item is about a kilobyte).
pub const MAX_ROW: usize = 1 << 20;

pub struct Rows<R> {
    input: R,
    buf: Vec<u8>,
    /// `buf[..filled]` holds data read; `eof` once the input has no more.
    filled: usize,
    eof: bool,
    /// Where the next block to scan starts.
    scan: usize,
    /// The current block (at `base`): its field and row ends not yet taken, which of those
    /// end rows, and its line feeds inside quotes (for line numbers), one bit per byte.
    base: usize,
    bits: u64,
    row_ends: u64,
    inner_newlines: u64,
    /// Whether the scan is inside a quoted field at `scan`.
    in_quotes: bool,
    row_start: usize,
    field_start: usize,
    /// The number of the field being read in the current row.
    field: usize,
    /// `next_wanted[i]`: the first wanted column at or after `i` (empty: every column).
    next_wanted: Vec<usize>,
    /// The current row's wanted fields as `buf` ranges (end excluded: the delimiter); other
    /// columns stay empty.
    slots: Vec<(usize, usize)>,
    /// Fields in the row handed out last.
    row_fields: usize,
    /// Line feeds inside quotes of the current row so far.
    row_breaks: u64,
    /// The line the next row starts on (1-based), and the line of the row handed out last.
    next_line: u64,
    row_line: u64,
    /// The longest row the buffer grows for.
    max_row: usize,
}

/// One row: its first line's number and its fields.
pub struct Row<'a> {
    pub line: u64,
    buf: &'a [u8],
    slots: &'a [(usize, usize)],
    fields: usize,
}

impl<'a> Row<'a> {
    /// Fields in the row (all of them, wanted or not).
    pub fn len(&self) -> usize {
        self.fields
    }

    /// Field `i`, trimmed, unquoted; empty past the row's end and for a column not selected.
    pub fn field(&self, i: usize) -> Cow<'a, [u8]> {
        match self.slots.get(i) {
            Some(&(a, b)) if i < self.fields => unquote(self.buf[a..b].trim_ascii()),
            _ => Cow::Borrowed(b""),
        }
    }
}

fn unquote(field: &[u8]) -> Cow<'_, [u8]> {
    let Some(inner) = field.strip_prefix(b"\"") else {
        return Cow::Borrowed(field);
    };
    let inner = inner.strip_suffix(b"\"").unwrap_or(inner);
    if memchr::memchr(b'"', inner).is_none() {
        return Cow::Borrowed(inner);
    }
    // `""` inside quotes is one quote.
    let mut out = Vec::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=at]);
        rest = &rest[at + 1..];
        if rest.first() == Some(&b'"') {
            rest = &rest[1..];
        }
    }
    out.extend_from_slice(rest);
    Cow::Owned(out)
}

impl<R: Read> Rows<R> {
    /// Rows of `input`, every column read until [`Rows::select`].
    pub fn new(input: R) -> Rows<R> {
        Rows {
            input,
            buf: vec![0; BUFFER],
            filled: 0,
            eof: false,
            scan: 0,
            base: 0,
            bits: 0,
            row_ends: 0,
            inner_newlines: 0,
            in_quotes: false,
            row_start: 0,
            field_start: 0,
            field: 0,
            next_wanted: Vec::new(),
            slots: Vec::new(),
            row_fields: 0,
            row_breaks: 0,
            next_line: 1,
            row_line: 0,
            max_row: MAX_ROW,
        }
    }

    /// A row longer than `bytes` is an error (`InvalidData`), not a buffer that grows
    /// without bound. Default [`MAX_ROW`].
    pub fn max_row(mut self, bytes: usize) -> Rows<R> {
        self.max_row = bytes;
        self
    }

    /// From the next row on, reads only `columns` (others read as empty): the fields between
    /// are skipped a block at a time, by counting their commas.
    pub fn select(&mut self, columns: &[usize]) {
        let width = columns.iter().max().map_or(0, |m| m + 1);
        self.next_wanted = vec![usize::MAX; width + 1];
        for i in (0..width).rev() {
            self.next_wanted[i] = if columns.contains(&i) {
                i
            } else {
                self.next_wanted[i + 1]
            };
        }
        self.slots = vec![(0, 0); width];
    }

    /// The line the next row would start on (for errors between rows).
    pub fn next_line(&self) -> u64 {
        self.next_line
    }

    /// The next non-blank row, `None` at the end; a read error as it came.
    pub fn next_row(&mut self) -> io::Result<Option<Row<'_>>> {
        loop {
            if self.bits == 0 {
                if self.next_block()? {
                    continue;
                }
                // The input ended: a last row without a line end, if any.
                if self.row_start >= self.filled {
                    return Ok(None);
                }
                let end = self.filled;
                if self.end_row(end) {
                    return Ok(Some(self.row()));
                }
                return Ok(None);
            }
            let ends = self.bits & self.row_ends;
            // The field ends before this block's next row end.
            let commas = if ends == 0 {
                self.bits
            } else {
                self.bits & ((ends & ends.wrapping_neg()) - 1)
            };
            if commas != 0 {
                let n = commas.count_ones() as usize;
                if self.wanted_from(self.field) >= self.field + n {
                    // None of these fields is wanted: past them at once.
                    self.field += n;
                    self.field_start = self.base + (63 - commas.leading_zeros() as usize) + 1;
                } else {
                    let mut left = commas;
                    while left != 0 {
                        let at = self.base + left.trailing_zeros() as usize;
                        left &= left - 1;
                        self.take_field(at);
                    }
                }
                self.bits &= !commas;
            }
            if ends != 0 {
                let offset = ends.trailing_zeros();
                self.bits &= self.bits - 1;
                let below = (1u64 << offset) - 1;
                self.row_breaks += u64::from((self.inner_newlines & below).count_ones());
                self.inner_newlines &= !below;
                if self.end_row(self.base + offset as usize) {
                    return Ok(Some(self.row()));
                }
            }
        }
    }

    fn wanted_from(&self, field: usize) -> usize {
        if self.next_wanted.is_empty() {
            field
        } else {
            self.next_wanted.get(field).copied().unwrap_or(usize::MAX)
        }
    }

    /// The current field ends at `at`.
    fn take_field(&mut self, at: usize) {
        if self.wanted_from(self.field) == self.field {
            if self.field >= self.slots.len() {
                self.slots.resize(self.field + 1, (0, 0));
            }
            self.slots[self.field] = (self.field_start, at);
        }
        self.field += 1;
        self.field_start = at + 1;
    }

    fn row(&self) -> Row<'_> {
        Row {
            line: self.row_line,
            buf: &self.buf,
            slots: &self.slots,
            fields: self.row_fields,
        }
    }

    /// Ends the row at `at` (its line feed, or the input's end). False for a blank line
    /// (nothing but spaces), which is skipped.
    fn end_row(&mut self, at: usize) -> bool {
        self.row_line = self.next_line;
        self.next_line += 1 + self.row_breaks;
        self.row_breaks = 0;
        let blank = self.field == 0 && self.buf[self.field_start..at].trim_ascii().is_empty();
        if !blank {
            self.take_field(at);
        }
        self.row_fields = self.field;
        self.field = 0;
        self.field_start = at + 1;
        self.row_start = at + 1;
        !blank
    }

    /// Scans the next block into `bits`; false at the input's end.
    fn next_block(&mut self) -> io::Result<bool> {
        // The last block's line feeds after its last structural byte are the current row's.
        self.row_breaks += u64::from(self.inner_newlines.count_ones());
        self.inner_newlines = 0;
        if self.filled - self.scan < BLOCK && !self.eof {
            self.refill()?;
        }
        if self.scan >= self.filled {
            return Ok(false);
        }
        let end = (self.scan + BLOCK).min(self.filled);
        let (quotes, commas, newlines) = match self.buf[self.scan..end].try_into() {
            Ok(block) => masks(block),
            Err(_) => {
                // The input's last, short block: zeros are no structural byte.
                let mut block = [0u8; BLOCK];
                block[..end - self.scan].copy_from_slice(&self.buf[self.scan..end]);
                masks(&block)
            }
        };
        let mut inside = prefix_xor(quotes);
        if self.in_quotes {
            inside = !inside;
        }
        self.in_quotes = inside >> 63 == 1;
        self.base = self.scan;
        self.bits = (commas | newlines) & !inside;
        self.row_ends = newlines & !inside;
        self.inner_newlines = newlines & inside;
        self.scan = end;
        Ok(true)
    }

    /// Moves the unfinished row to the buffer's front (growing it for a row longer than the
    /// buffer) and reads until a block's worth is there or the input ends.
    fn refill(&mut self) -> io::Result<()> {
        let keep = self.row_start;
        if keep > 0 {
            self.buf.copy_within(keep..self.filled, 0);
            self.filled -= keep;
            self.scan -= keep;
            self.base = self.base.saturating_sub(keep);
            self.field_start -= keep;
            self.row_start = 0;
            // The unfinished row's fields so far move with it; the others are stale (from
            // earlier rows) and are written again before they are read.
            for slot in &mut self.slots {
                slot.0 = slot.0.saturating_sub(keep);
                slot.1 = slot.1.saturating_sub(keep);
            }
        }
        if self.filled + BLOCK > self.buf.len() {
            // The buffer is full of one unfinished row.
            if self.filled - self.row_start >= self.max_row {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a row of more than {} bytes (an unclosed quote?); the limit is cur.max_row_bytes",
                        self.max_row
                    ),
                ));
            }
            let grown = (self.buf.len() * 2).min(self.max_row + BUFFER);
            self.buf.resize(grown, 0);
        }
        while self.filled - self.scan < BLOCK && !self.eof {
            match self.input.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// One bit per byte of `block` equal to `"`, `,` and `\n`.
fn masks(block: &[u8; BLOCK]) -> (u64, u64, u64) {
    let (mut quotes, mut commas, mut newlines) = (0u64, 0u64, 0u64);
    for (i, word) in block.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        quotes |= byte_mask(w, b'"') << (i * 8);
        commas |= byte_mask(w, b',') << (i * 8);
        newlines |= byte_mask(w, b'\n') << (i * 8);
    }
    (quotes, commas, newlines)
}

/// One bit per byte of `w` equal to `c`, exactly (no false positives from borrows).
fn byte_mask(w: u64, c: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (u64::from(c) * 0x0101_0101_0101_0101);
    // High bit of each byte set where that byte of x is zero.
    let zero = !(((x & LOW7) + LOW7) | x | LOW7);
    // Gather the eight high bits into the low byte, byte k to bit k.
    ((zero >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Bit i set when an odd number of bits at or below i are set.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8]) -> Vec<(u64, Vec<String>)> {
        let mut rows = Rows::new(text);
        let mut out = Vec::new();
        while let Some(row) = rows.next_row().unwrap() {
            let fields = (0..row.len())
                .map(|i| String::from_utf8(row.field(i).into_owned()).unwrap())
                .collect();
            out.push((row.line, fields));
        }
        out
    }

    /// The `csv` crate's reading of the same text, for comparison.
    fn by_csv(text: &[u8]) -> Vec<Vec<String>> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text);
        r.records()
            .map(|r| r.unwrap().iter().map(|f| f.trim().to_string()).collect())
            .collect()
    }

    #[test]
    fn byte_masks_are_exact() {
        let w = u64::from_le_bytes(*b",\x01,\"\n,a\x2d");
        assert_eq!(byte_mask(w, b','), 0b0010_0101);
        assert_eq!(byte_mask(w, b'"'), 0b0000_1000);
        assert_eq!(byte_mask(w, b'\n'), 0b0001_0000);
        assert_eq!(byte_mask(u64::MAX, 0xff), 0xff);
        assert_eq!(byte_mask(0, 0), 0xff);
        assert_eq!(byte_mask(0x0100, 0), 0b1111_1101);
    }

    #[test]
    fn quoted_fields_line_breaks_crlf_and_a_last_line_without_end() {
        let text = b"a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n\r\n3,,4";
        assert_eq!(
            all(text),
            [
                (1, vec!["a".into(), "b".into(), "c".into()]),
                (
                    2,
                    vec!["x, y".into(), "say \"hi\"".into(), "two\nlines".into()]
                ),
                (5, vec!["3".into(), "".into(), "4".into()]),
            ]
        );
    }

    #[test]
    fn agrees_with_the_csv_crate_across_block_and_buffer_edges() {
        // Rows of every length around the block size, quotes and line breaks at every
        // offset, and enough of them to cross several buffer refills.
        let mut text = Vec::new();
        let mut n = 0u64;
        while text.len() < 3 * BUFFER {
            n += 1;
            let pad = "p".repeat((n * 7 % 150) as usize);
            match n % 4 {
                0 => text.extend_from_slice(format!("{n},{pad},\"q,{pad}\"\n").as_bytes()),
                1 => text.extend_from_slice(format!("\"{pad}\n{n}\",x\r\n").as_bytes()),
                2 => text.extend_from_slice(format!("{n},\"a\"\"b\",{pad}\r\n").as_bytes()),
                _ => text.extend_from_slice(format!("{pad}{n}\n").as_bytes()),
            }
        }
        let rows = all(&text);
        assert_eq!(rows.len() as u64, n);
        // Each row starts on the line after its predecessor's line breaks.
        let mut line = 1;
        for (at, fields) in &rows {
            assert_eq!(*at, line, "{fields:?}");
            line += 1 + fields.iter().map(|f| f.matches('\n').count() as u64).sum::<u64>();
        }
        let ours: Vec<Vec<String>> = rows.into_iter().map(|(_, f)| f).collect();
        assert_eq!(ours, by_csv(&text));
    }

    #[test]
    fn selected_columns_read_as_the_csv_crate_reads_them_and_the_rest_read_empty() {
        // Wide rows (up to 40 fields) with quoted commas and line breaks anywhere, so that
        // skipped runs of fields start and end at every offset of a block.
        let mut text = b"h\n".to_vec();
        let mut n = 0u64;
        while text.len() < 2 * BUFFER {
            n += 1;
            let width = 5 + (n * 13 % 36) as usize;
            let fields: Vec<String> = (0..width)
                .map(|i| match (n as usize + i) % 9 {
                    0 => format!("\"{i},{n}\""),
                    4 => format!("\"l\n{i}\""),
                    7 => String::new(),
                    _ => format!("{}{i}", "x".repeat((n as usize * i) % 11)),
                })
                .collect();
            text.extend_from_slice(fields.join(",").as_bytes());
            text.extend_from_slice(if n.is_multiple_of(2) { b"\r\n" } else { b"\n" });
        }
        let wanted = [1, 7, 8, 30];
        let mut rows = Rows::new(&text[..]);
        rows.next_row().unwrap();
        rows.select(&wanted);
        let expected = by_csv(&text);
        let mut seen = 0;
        while let Some(row) = rows.next_row().unwrap() {
            let want = &expected[seen + 1];
            assert_eq!(row.len(), want.len(), "row {}", seen + 1);
            for i in 0..want.len() + 2 {
                let got = String::from_utf8(row.field(i).into_owned()).unwrap();
                let expect = match want.get(i) {
                    Some(f) if wanted.contains(&i) => f.as_str(),
                    _ => "",
                };
                assert_eq!(got, expect, "row {}, field {i}", seen + 1);
            }
            seen += 1;
        }
        assert_eq!(seen as u64, n);
    }

    #[test]
    fn a_row_longer_than_the_buffer_grows_it() {
        let long = "v".repeat(BUFFER * 2 + 3);
        let text = format!("h1,h2\n1,\"{long}\"\n2,x\n");
        let rows = all(text.as_bytes());
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].1[1].len(), long.len());
        assert_eq!(rows[2], (3, vec!["2".into(), "x".into()]));
    }

    #[test]
    fn read_errors_come_through() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"))
            }
        }
        let mut rows = Rows::new(Broken);
        assert!(rows.next_row().is_err());
    }
}
