//! Cost reports, streamed: the column layout detected from the header, each line item read
//! once, and costs summed exactly per (day, payer, account, service, region, currency).
//!
//! Layouts (from the header):
//!
//! | | legacy CUR | legacy CUR, Athena names | CUR 2.0 | FOCUS 1.x |
//! |---|---|---|---|---|
//! | day (UTC date of) | `lineItem/UsageStartDate` | `line_item_usage_start_date` | same | `ChargePeriodStart` |
//! | account | `lineItem/UsageAccountId` | `line_item_usage_account_id` | same | `SubAccountId` |
//! | payer | `bill/PayerAccountId` | `bill_payer_account_id` | same | `BillingAccountId` |
//! | service | `lineItem/ProductCode` | `line_item_product_code` | same | `x_ServiceCode`, else `ServiceName` |
//! | region | `product/region`, else `product/regionCode` | `product_region`, else `product_region_code` | `product_region_code` | `RegionId` |
//! | cost | `lineItem/UnblendedCost` | `line_item_unblended_cost` | same | `BilledCost` |
//! | currency | `lineItem/CurrencyCode` | `line_item_currency_code` | same | `BillingCurrency` |
//!
//! CUR 2.0 is told from Athena-named legacy CUR by its map column `product`. Every line item
//! counts (usage, tax, credits, refunds, negations); an empty or `NULL` cost is zero; a region
//! column that is missing or empty gives `""`; a missing currency column means `USD`. Costs are
//! summed as fixed-point decimals (15 places), so totals do not drift however many lines
//! there are. Errors name the report, the line and the column.
//!
//! The parser reads any `std::io::Read` (the workflow's S3 stream, the CLI's files); it does
//! no I/O of its own.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;

use super::rows::Rows;

/// The columns of a summary as CSV (`tugboat cur summarize --format csv`, the curated object).
pub const CSV_HEADER: &str = "day,payer,account,service,region,cost,currency";

/// One CSV record (with its line end), each field quoted where it must be (RFC 4180).
pub fn csv_record(fields: &[&str]) -> String {
    let mut line = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        if f.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&f.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(f);
        }
    }
    line.push('\n');
    line
}

/// Whether a report's first bytes are gzip's (reports are recognised by their bytes, not by
/// their names).
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// A gzip report inflated (every member), its read errors named for what they most likely
/// are: csv alone would only say "reading failed".
pub struct Gunzip<R>(flate2::bufread::MultiGzDecoder<R>);

impl<R: std::io::BufRead> Gunzip<R> {
    pub fn new(input: R) -> Gunzip<R> {
        Gunzip(flate2::bufread::MultiGzDecoder::new(input))
    }
}

impl<R: std::io::BufRead> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            std::io::Error::new(e.kind(), format!("gzip: {e} (a truncated or damaged file?)"))
        })
    }
}

/// Decimal places kept by [`Cost`].
const SCALE: u32 = 15;

/// An exact amount of money: units of 10^-15.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost(pub i128);

impl Cost {
    /// Parses `12.5`, `-0.0000012`, `1.2E-5`, `` (zero) or `NULL` (zero).
    pub fn parse(text: &str) -> Result<Cost, String> {
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("null") {
            return Ok(Cost(0));
        }
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(i) => (
                &t[..i],
                t[i + 1..]
                    .parse::<i32>()
                    .map_err(|_| format!("{text:?} is not a number"))?,
            ),
            None => (t, 0),
        };
        let (negative, digits) = match mantissa.as_bytes().first() {
            Some(b'-') => (true, &mantissa[1..]),
            Some(b'+') => (false, &mantissa[1..]),
            _ => (false, mantissa),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!("{text:?} is not a number"));
        }
        // All the digits as one integer, and where the point goes.
        let mut value: i128 = 0;
        let mut places: i32 = frac.len() as i32 - exponent;
        for b in int.bytes().chain(frac.bytes()) {
            if value > i128::MAX / 100 {
                return Err(format!("{text:?} is out of range"));
            }
            value = value * 10 + i128::from(b - b'0');
        }
        // Scale to SCALE places, rounding half away from zero when digits are dropped.
        while places > SCALE as i32 {
            let last = value % 10;
            value /= 10;
            if places == SCALE as i32 + 1 && last >= 5 {
                value += 1;
            }
            places -= 1;
        }
        while places < SCALE as i32 {
            if value > i128::MAX / 100 {
                return Err(format!("{text:?} is out of range"));
            }
            value *= 10;
            places += 1;
        }
        Ok(Cost(if negative { -value } else { value }))
    }
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        self.0 += other.0;
    }
}

impl fmt::Display for Cost {
    /// As a plain decimal without trailing zeros: `12.5`, `-0.0000012`, `0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = 10i128.pow(SCALE);
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (int, frac) = (abs / unit as u128, abs % unit as u128);
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let frac = format!("{frac:0width$}", width = SCALE as usize);
        write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
    }
}

/// Which layout a report has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    LegacyCur,
    LegacyAthena,
    Cur2,
    Focus,
}

/// The columns a report's figures come from.
#[derive(Debug, Clone)]
struct Columns {
    layout: Layout,
    day: usize,
    account: usize,
    payer: usize,
    service: usize,
    /// FOCUS: `ServiceName` where `x_ServiceCode` is empty.
    service_fallback: Option<usize>,
    region: Option<usize>,
    cost: usize,
    currency: Option<usize>,
    /// The usage type, its unit rate and pricing unit, where the layout has them (CUR, not
    /// FOCUS): for [`Summary::rates`].
    usage_type: Option<usize>,
    rate: Option<usize>,
    unit: Option<usize>,
    names: Vec<String>,
}

impl Columns {
    /// The columns the summary reads.
    fn used(&self) -> Vec<usize> {
        [self.day, self.account, self.payer, self.service, self.cost]
            .into_iter()
            .chain(self.service_fallback)
            .chain(self.region)
            .chain(self.currency)
            .chain(self.rated().into_iter().flat_map(|(usage, rate)| [usage, rate]))
            .chain(self.unit.filter(|_| self.rated().is_some()))
            .collect()
    }

    /// The usage type and rate columns, when the report has both.
    fn rated(&self) -> Option<(usize, usize)> {
        self.usage_type.zip(self.rate)
    }

    fn detect(header: &[String], report: &str) -> Result<Columns, String> {
        let find = |name: &str| header.iter().position(|h| h == name);
        let layout = if find("lineItem/UnblendedCost").is_some() {
            Layout::LegacyCur
        } else if find("line_item_unblended_cost").is_some() {
            if find("product").is_some() {
                Layout::Cur2
            } else {
                Layout::LegacyAthena
            }
        } else if find("BilledCost").is_some() {
            Layout::Focus
        } else {
            return Err(format!(
                "{report}: line 1: not a cost report: no lineItem/UnblendedCost, line_item_unblended_cost or BilledCost column"
            ));
        };
        let need = |name: &str| {
            find(name).ok_or_else(|| {
                format!("{report}: line 1: a {layout:?} report needs the column {name}, which is missing")
            })
        };
        let first = |names: &[&str]| names.iter().find_map(|n| find(n));
        Ok(match layout {
            Layout::LegacyCur => Columns {
                layout,
                day: need("lineItem/UsageStartDate")?,
                account: need("lineItem/UsageAccountId")?,
                payer: need("bill/PayerAccountId")?,
                service: need("lineItem/ProductCode")?,
                service_fallback: None,
                region: first(&["product/region", "product/regionCode"]),
                cost: need("lineItem/UnblendedCost")?,
                currency: find("lineItem/CurrencyCode"),
                usage_type: find("lineItem/UsageType"),
                rate: find("lineItem/UnblendedRate"),
                unit: find("pricing/unit"),
                names: header.to_vec(),
            },
            Layout::LegacyAthena | Layout::Cur2 => Columns {
                layout,
                day: need("line_item_usage_start_date")?,
                account: need("line_item_usage_account_id")?,
                payer: need("bill_payer_account_id")?,
                service: need("line_item_product_code")?,
                service_fallback: None,
                region: first(&["product_region", "product_region_code"]),
                cost: need("line_item_unblended_cost")?,
                currency: find("line_item_currency_code"),
                usage_type: find("line_item_usage_type"),
                rate: find("line_item_unblended_rate"),
                unit: find("pricing_unit"),
                names: header.to_vec(),
            },
            Layout::Focus => {
                let code = find("x_ServiceCode");
                let name = find("ServiceName");
                Columns {
                    layout,
                    day: need("ChargePeriodStart")?,
                    account: need("SubAccountId")?,
                    payer: need("BillingAccountId")?,
                    service: code.or(name).ok_or_else(|| {
                        format!(
                            "{report}: line 1: a FOCUS report needs x_ServiceCode or ServiceName"
                        )
                    })?,
                    service_fallback: code.and(name),
                    region: find("RegionId"),
                    cost: need("BilledCost")?,
                    currency: find("BillingCurrency"),
                    // FOCUS has no usage type to key a rate by.
                    usage_type: None,
                    rate: None,
                    unit: None,
                    names: header.to_vec(),
                }
            }
        })
    }
}

/// What a day's costs are summed by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub day: String,
    pub payer: String,
    pub account: String,
    pub service: String,
    pub region: String,
    pub currency: String,
}

/// How much of a report is read before it is refused: a report comes from a bucket others
/// may write to, and a small gzip file can inflate to any size. Each limit, reached, is a
/// permanent error that names its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest row (`cur.max_row_bytes`). Default 1 MiB.
    pub max_row_bytes: usize,
    /// The most bytes one report inflates to (`cur.max_report_bytes`). Default 64 GiB.
    pub max_report_bytes: u64,
    /// The most distinct (day, payer, account, service, region, currency) sums
    /// (`cur.max_keys`). Default 1 000 000.
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_row_bytes: super::rows::MAX_ROW,
            max_report_bytes: 64 << 30,
            max_keys: 1_000_000,
        }
    }
}

/// Reads at most `left` bytes, then fails naming the limit.
struct Bounded<R> {
    input: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One more byte tells a report of exactly the limit from a longer one.
            let mut probe = [0u8; 1];
            return match self.input.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the report is larger than {} bytes (inflated); the limit is cur.max_report_bytes",
                        self.limit
                    ),
                )),
            };
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.input.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// What a rate is kept by: region, usage type (without its region prefix), currency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RateKey {
    pub region: String,
    pub usage_type: String,
    pub currency: String,
}

/// The highest non-zero unit rate billed for a [`RateKey`], its unit, and the latest day it
/// was billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rated {
    pub rate: Cost,
    pub unit: String,
    pub day: String,
}

impl Rated {
    /// Keeps the higher rate (its unit with it) and the later day.
    fn merge(&mut self, other: Rated) {
        if other.rate > self.rate {
            self.rate = other.rate;
            self.unit = other.unit;
        }
        if other.day > self.day {
            self.day = other.day;
        }
    }
}

/// Adds `rated` to `rates`: merged with a rate already kept for `key`.
fn keep_rate(rates: &mut BTreeMap<RateKey, Rated>, key: RateKey, rated: Rated) {
    match rates.get_mut(&key) {
        Some(kept) => kept.merge(rated),
        None => {
            rates.insert(key, rated);
        }
    }
}

/// Costs summed per [`Key`], over one or more reports.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub totals: BTreeMap<Key, Cost>,
    /// The unit rates of the usage types the resource scan prices
    /// ([`crate::ports::costs::RATED_USAGE`]).
    pub rates: BTreeMap<RateKey, Rated>,
    /// Line items read.
    pub rows: u64,
    pub limits: Limits,
}

impl Summary {
    /// Reads one report (CSV text, already decompressed) named `report` in errors, adding
    /// its line items. Returns the report's layout.
    ///
    /// Fast path: only the columns used are looked at ([`Rows::select`]: the others are
    /// skipped by counting commas), on a thread of their own that hands batches of the used
    /// fields to this one; fields stay bytes, and each distinct value is kept once, so that a
    /// line item costs six small hash lookups and no allocation; the strings are built once
    /// per distinct sum at the end.
    pub fn add_report(
        &mut self,
        input: impl Read + Send,
        report: &str,
    ) -> Result<Layout, String> {
        let limits = self.limits;
        let input = Bounded {
            input,
            left: limits.max_report_bytes,
            limit: limits.max_report_bytes,
        };
        let mut rows = Rows::new(input).max_row(limits.max_row_bytes);
        let read_failed =
            |line: u64, e: std::io::Error| format!("{report}: line {line}: reading failed: {e}");
        let header = match rows.next_row() {
            Ok(Some(row)) => (0..row.len())
                .map(|i| {
                    let h = String::from_utf8_lossy(&row.field(i)).into_owned();
                    let h = if i == 0 {
                        h.trim_start_matches('\u{feff}').to_string()
                    } else {
                        h
                    };
                    h.trim().to_string()
                })
                .collect::<Vec<_>>(),
            Ok(None) => return Err(format!("{report}: the report is empty (no header line)")),
            Err(e) => return Err(read_failed(1, e)),
        };
        let columns = Columns::detect(&header, report)?;
        let mut used = columns.used();
        used.sort_unstable();
        used.dedup();
        rows.select(&used);
        let mut slot = vec![usize::MAX; header.len()];
        for (k, &c) in used.iter().enumerate() {
            slot[c] = k;
        }
        let width = header.len();
        let mut values = Interner::default();
        let mut sums: HashMap<[u32; 6], Cost, Fnv> = HashMap::default();
        // Rates by (region, usage type, currency) ids: (rate, unit id, day id); and per usage
        // type id, its prefix-less form's id when it is one the scan prices (asked once each).
        let mut rates: HashMap<[u32; 3], (Cost, u32, u32), Fnv> = HashMap::default();
        let mut rated: HashMap<u32, Option<u32>, Fnv> = HashMap::default();
        let mut rows_read = 0u64;
        // Two threads: this one sums, a second splits rows and copies out the used fields, a
        // few batches ahead (the split is most of the work: together they take two cores).
        std::thread::scope(|scope| -> Result<(), String> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Batch, String>>(4);
            let used = &used;
            scope.spawn(move || {
                let mut batch = Batch::with_capacity(used.len());
                loop {
                    match rows.next_row() {
                        Ok(Some(row)) => {
                            if row.len() > width {
                                let _ = tx.send(Err(format!(
                                    "{report}: line {}: {} fields where the header has {width}",
                                    row.line,
                                    row.len()
                                )));
                                return;
                            }
                            batch.push(&row, used);
                            if batch.full()
                                && tx
                                    .send(Ok(std::mem::replace(
                                        &mut batch,
                                        Batch::with_capacity(used.len()),
                                    )))
                                    .is_err()
                            {
                                // The summing side stopped (an error): so does this one.
                                return;
                            }
                        }
                        Ok(None) => {
                            let _ = tx.send(Ok(batch));
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(read_failed(rows.next_line(), e)));
                            return;
                        }
                    }
                }
            });
            for batch in rx {
                let batch = batch?;
                for r in 0..batch.lines.len() {
                    let line = batch.lines[r];
                    let at = |column: usize, what: String| {
                        format!(
                            "{report}: line {line}, column {}: {what}",
                            columns.names[column]
                        )
                    };
                    let field = |i: usize| batch.field(r, slot[i]);
                    let cost = field(columns.cost);
                    let cost = std::str::from_utf8(cost)
                        .map_err(|_| at(columns.cost, "not UTF-8 text".into()))
                        .and_then(|text| Cost::parse(text).map_err(|e| at(columns.cost, e)))?;
                    let day = values
                        .day(field(columns.day))
                        .map_err(|e| at(columns.day, e))?;
                    let mut service = field(columns.service);
                    if is_null(service)
                        && let Some(fallback) = columns.service_fallback
                    {
                        service = field(fallback);
                    }
                    let value = |values: &mut Interner, bytes: &[u8], i: usize, default: &str| {
                        if is_null(bytes) {
                            values.id(default.as_bytes())
                        } else {
                            values.id(bytes)
                        }
                        .map_err(|_| at(i, "not UTF-8 text".into()))
                    };
                    let key = [
                        day,
                        value(&mut values, field(columns.payer), columns.payer, "")?,
                        value(&mut values, field(columns.account), columns.account, "")?,
                        value(&mut values, service, columns.service, "")?,
                        match columns.region {
                            Some(i) => value(&mut values, field(i), i, "")?,
                            None => values.id(b"").unwrap_or_default(),
                        },
                        match columns.currency {
                            Some(i) => value(&mut values, field(i), i, "USD")?,
                            None => values.id(b"USD").unwrap_or_default(),
                        },
                    ];
                    if let Some((usage, rate)) = columns.rated()
                        && !is_null(field(usage))
                    {
                        let id = value(&mut values, field(usage), usage, "")?;
                        let bare = match rated.get(&id) {
                            Some(b) => *b,
                            None => {
                                let b = crate::ports::costs::rated_usage(&values.strings[id as usize])
                                    .map(str::to_string);
                                let b = b.map(|b| values.id(b.as_bytes()).unwrap_or_default());
                                rated.insert(id, b);
                                b
                            }
                        };
                        if let Some(bare) = bare {
                            let text = std::str::from_utf8(field(rate))
                                .map_err(|_| at(rate, "not UTF-8 text".into()))?;
                            let amount = Cost::parse(text).map_err(|e| at(rate, e))?;
                            if amount.0 > 0 {
                                let unit = match columns.unit {
                                    Some(i) => value(&mut values, field(i), i, "")?,
                                    None => values.id(b"").unwrap_or_default(),
                                };
                                let entry = rates.entry([key[4], bare, key[5]]).or_insert((amount, unit, day));
                                if amount > entry.0 {
                                    (entry.0, entry.1) = (amount, unit);
                                }
                                if values.strings[day as usize] > values.strings[entry.2 as usize] {
                                    entry.2 = day;
                                }
                                if rates.len() > limits.max_keys {
                                    return Err(format!(
                                        "{report}: line {line}: more than {} distinct (region, usage type, currency) rates; the limit is cur.max_keys",
                                        limits.max_keys
                                    ));
                                }
                            }
                        }
                    }
                    *sums.entry(key).or_default() += cost;
                    if sums.len() > limits.max_keys {
                        return Err(format!(
                            "{report}: line {line}: more than {} distinct (day, payer, account, service, region, currency) sums; the limit is cur.max_keys",
                            limits.max_keys
                        ));
                    }
                    rows_read += 1;
                }
            }
            Ok(())
        })?;
        for (ids, cost) in sums {
            let name = |i: usize| values.strings[ids[i] as usize].clone();
            let key = Key {
                day: name(0),
                payer: name(1),
                account: name(2),
                service: name(3),
                region: name(4),
                currency: name(5),
            };
            *self.totals.entry(key).or_default() += cost;
        }
        for ([region, usage, currency], (rate, unit, day)) in rates {
            let name = |i: u32| values.strings[i as usize].clone();
            let key = RateKey { region: name(region), usage_type: name(usage), currency: name(currency) };
            keep_rate(&mut self.rates, key, Rated { rate, unit: name(unit), day: name(day) });
        }
        self.rows += rows_read;
        self.within_keys(report)?;
        Ok(columns.layout)
    }

    /// Adds `part`'s sums and line items (another part of one delivery, read on its own).
    pub fn merge(&mut self, part: Summary, name: &str) -> Result<(), String> {
        for (k, c) in part.totals {
            *self.totals.entry(k).or_default() += c;
        }
        for (k, r) in part.rates {
            keep_rate(&mut self.rates, k, r);
        }
        self.rows += part.rows;
        self.within_keys(name)
    }

    /// The sums held so far are within `cur.max_keys`.
    fn within_keys(&self, name: &str) -> Result<(), String> {
        if self.totals.len() > self.limits.max_keys {
            return Err(format!(
                "{name}: more than {} distinct sums over the reports read; the limit is cur.max_keys",
                self.limits.max_keys
            ));
        }
        Ok(())
    }
}

/// Rows' used fields, copied out of the splitter's buffer to cross to the summing thread.
struct Batch {
    /// Used columns per row.
    width: usize,
    /// Each row's first line.
    lines: Vec<u64>,
    /// Per row, per used column (in column order): its bytes in `bytes`.
    spans: Vec<(usize, usize)>,
    bytes: Vec<u8>,
}

impl Batch {
    const ROWS: usize = 4096;

    fn with_capacity(width: usize) -> Batch {
        Batch {
            width,
            lines: Vec::with_capacity(Batch::ROWS),
            spans: Vec::with_capacity(Batch::ROWS * width),
            bytes: Vec::with_capacity(Batch::ROWS * width * 16),
        }
    }

    fn push(&mut self, row: &super::rows::Row<'_>, used: &[usize]) {
        self.lines.push(row.line);
        for &c in used {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(&row.field(c));
            self.spans.push((start, self.bytes.len()));
        }
    }

    fn full(&self) -> bool {
        self.lines.len() >= Batch::ROWS
    }

    /// Row `r`'s field in used column `k` (empty for a column not used).
    fn field(&self, r: usize, k: usize) -> &[u8] {
        match self.spans.get(r * self.width + k) {
            Some(&(a, b)) if k < self.width => &self.bytes[a..b],
            _ => b"",
        }
    }
}

/// Empty, or the `NULL` FOCUS exports write.
fn is_null(bytes: &[u8]) -> bool {
    bytes.is_empty() || bytes.eq_ignore_ascii_case(b"null")
}

/// Each distinct field value once, by number.
#[derive(Default)]
struct Interner {
    ids: HashMap<Box<[u8]>, u32, Fnv>,
    strings: Vec<String>,
    /// Timestamps' first ten bytes (their date, when they carry no offset) → the day's id.
    days: HashMap<[u8; 10], u32, Fnv>,
}

/// FNV-1a from a random starting value: the keys here are short, so a fast hash beats
/// SipHash, but they are a report's field values, which whoever writes to the bucket chooses;
/// a starting value of each map's own keeps collisions worked out in advance from
/// colliding here (and `cur.max_keys` bounds how many keys there can be).
#[derive(Clone, Copy)]
struct Fnv {
    basis: u64,
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv {
            basis: rand::random(),
        }
    }
}

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(self.basis)
    }
}

struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Interner {
    fn id(&mut self, bytes: &[u8]) -> Result<u32, std::str::Utf8Error> {
        if let Some(&id) = self.ids.get(bytes) {
            return Ok(id);
        }
        let text = std::str::from_utf8(bytes)?.to_string();
        let id = self.strings.len() as u32;
        self.strings.push(text);
        self.ids.insert(bytes.into(), id);
        Ok(id)
    }

    /// The id of the UTC day of a timestamp; [`utc_day`] runs once per distinct date, or for
    /// every timestamp that carries an offset.
    fn day(&mut self, bytes: &[u8]) -> Result<u32, String> {
        let offset = bytes.len() > 16 && {
            let tail = &bytes[bytes.len() - 6..];
            matches!(tail[0], b'+' | b'-') && tail[3] == b':'
        };
        if !offset && let Some(prefix) = bytes.get(..10).and_then(|p| <[u8; 10]>::try_from(p).ok())
        {
            if let Some(&id) = self.days.get(&prefix) {
                return Ok(id);
            }
            let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
            let day = utc_day(text)?;
            let id = self.id(day.as_bytes()).map_err(|e| e.to_string())?;
            self.days.insert(prefix, id);
            return Ok(id);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let day = utc_day(text)?;
        self.id(day.as_bytes()).map_err(|e| e.to_string())
    }
}

/// The UTC date of a timestamp: `2018-08-01T00:00:00Z`, `2024-09-18 22:00:00` (no zone: UTC),
/// `2024-09-18T23:30:00-02:00` (converted), or a bare date.
pub fn utc_day(text: &str) -> Result<String, String> {
    let t = text.trim();
    let date = t.get(..10).unwrap_or("");
    let valid_date = |d: &str| {
        d.len() == 10
            && time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                .is_ok()
    };
    if !valid_date(date) {
        return Err(format!("{text:?} is not a date"));
    }
    let rest = &t[10..];
    // An explicit offset other than Z: convert to UTC.
    let has_offset = rest.len() > 6
        && matches!(rest.as_bytes()[rest.len() - 6], b'+' | b'-')
        && rest.as_bytes()[rest.len() - 3] == b':';
    if has_offset {
        let parsed = time::OffsetDateTime::parse(
            &t.replacen(' ', "T", 1),
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| format!("{text:?}: {e}"))?;
        let utc = parsed.to_offset(time::UtcOffset::UTC).date();
        return Ok(format!(
            "{:04}-{:02}-{:02}",
            utc.year(),
            u8::from(utc.month()),
            utc.day()
        ));
    }
    Ok(date.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_parse_exactly_and_print_plainly() {
        for (text, shown) in [
            ("12.5", "12.5"),
            ("-0.0000012", "-0.0000012"),
            ("0.00000080000", "0.0000008"),
            ("1.2E-5", "0.000012"),
            ("3e2", "300"),
            ("", "0"),
            ("NULL", "0"),
            ("+7", "7"),
            (".5", "0.5"),
            ("0.0000000000000004", "0"),
            ("0.0000000000000005", "0.000000000000001"),
        ] {
            assert_eq!(Cost::parse(text).unwrap().to_string(), shown, "{text}");
        }
        for bad in ["abc", "1.2.3", "-", "1e", "12,5", "1e99999999999", "."] {
            assert!(Cost::parse(bad).is_err(), "{bad}");
        }
        let mut sum = Cost::default();
        for _ in 0..10 {
            sum += Cost::parse("0.1").unwrap();
        }
        assert_eq!(sum.to_string(), "1");
    }

    #[test]
    fn the_rates_of_priced_usage_types_are_kept_highest_and_latest() {
        // Athena-named legacy CUR; region prefixes dropped; zero rates (free tier, covered
        // usage) and usage types the scan never prices left out; a bad rate is named.
        let text = "bill_payer_account_id,line_item_usage_account_id,line_item_usage_start_date,line_item_product_code,product_region,line_item_unblended_cost,line_item_usage_type,line_item_unblended_rate,pricing_unit\n\
            9,1,2024-06-01T00:00:00Z,AmazonEC2,us-west-2,8.0,USW2-EBS:VolumeUsage.gp3,0.08,GB-Mo\n\
            9,1,2024-06-03T00:00:00Z,AmazonEC2,us-west-2,0,USW2-EBS:VolumeUsage.gp3,0,GB-Mo\n\
            9,2,2024-06-02T00:00:00Z,AmazonEC2,us-west-2,2.0,USW2-BoxUsage:m5.large,0.096,Hrs\n\
            9,2,2024-06-05T00:00:00Z,AmazonEC2,us-west-2,1.0,USW2-BoxUsage:m5.large,0.05,Hrs\n\
            9,2,2024-06-05T00:00:00Z,AmazonEC2,us-east-1,1.0,BoxUsage:m5.large,0.096,Hrs\n\
            9,2,2024-06-05T00:00:00Z,AmazonS3,us-west-2,1.0,USW2-TimedStorage-ByteHrs,0.023,GB-Mo\n\
            9,2,2024-06-05T00:00:00Z,AWSSupport,,1.0,,,\n";
        let mut s = Summary::default();
        s.add_report(text.as_bytes(), "r.csv").unwrap();
        let rates: Vec<(String, String, String, String, String)> = s
            .rates
            .iter()
            .map(|(k, r)| (k.region.clone(), k.usage_type.clone(), r.rate.to_string(), r.unit.clone(), r.day.clone()))
            .collect();
        let row = |a: &str, b: &str, c: &str, d: &str, e: &str| (a.into(), b.into(), c.into(), d.into(), e.into());
        assert_eq!(
            rates,
            vec![
                row("us-east-1", "BoxUsage:m5.large", "0.096", "Hrs", "2024-06-05"),
                row("us-west-2", "BoxUsage:m5.large", "0.096", "Hrs", "2024-06-05"),
                row("us-west-2", "EBS:VolumeUsage.gp3", "0.08", "GB-Mo", "2024-06-01"),
            ]
        );
        // A second part merges: a higher rate wins, a later day moves the day on.
        let mut more = Summary::default();
        more.add_report(
            "bill_payer_account_id,line_item_usage_account_id,line_item_usage_start_date,line_item_product_code,product_region,line_item_unblended_cost,line_item_usage_type,line_item_unblended_rate,pricing_unit\n\
             9,1,2024-06-09T00:00:00Z,AmazonEC2,us-west-2,1,USW2-EBS:VolumeUsage.gp3,0.07,GB-Mo\n"
                .as_bytes(),
            "p2.csv",
        )
        .unwrap();
        s.merge(more, "p2.csv").unwrap();
        let gp3 = &s.rates[&RateKey { region: "us-west-2".into(), usage_type: "EBS:VolumeUsage.gp3".into(), currency: "USD".into() }];
        assert_eq!((gp3.rate.to_string().as_str(), gp3.day.as_str()), ("0.08", "2024-06-09"));

        let bad = "bill_payer_account_id,line_item_usage_account_id,line_item_usage_start_date,line_item_product_code,product_region,line_item_unblended_cost,line_item_usage_type,line_item_unblended_rate\n\
                   9,1,2024-06-01T00:00:00Z,AmazonEC2,us-west-2,8.0,EBS:SnapshotUsage,cheap\n";
        let e = Summary::default().add_report(bad.as_bytes(), "b.csv").unwrap_err();
        assert_eq!(e, "b.csv: line 2, column line_item_unblended_rate: \"cheap\" is not a number");
    }

    #[test]
    fn a_real_reports_instance_rates_are_its_on_demand_prices() {
        // koku's gzip CUR (tests/fixtures/INDEX.md): four instance types billed all month.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cur/legacy-cur/koku-local-bucket/koku-local/20180801-20180901/16e57707-f9e3-49be-8be6-b84e684b5194/koku-local-1.csv.gz"
        );
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut s = Summary::default();
        s.add_report(Gunzip::new(file), "koku").unwrap();
        let boxes: BTreeMap<&str, String> = s
            .rates
            .iter()
            .filter(|(k, _)| k.usage_type.starts_with("BoxUsage:"))
            .map(|(k, r)| (k.usage_type.as_str(), format!("{}/{}", r.rate, r.unit)))
            .collect();
        assert_eq!(boxes["BoxUsage:m5.large"], "0.096/Hrs", "{boxes:?}");
        assert_eq!(boxes["BoxUsage:c4.xlarge"], "0.199/Hrs");
        assert!(s.rates.keys().any(|k| k.usage_type == "EBS:SnapshotUsage"), "{:?}", s.rates.keys());
        assert!(s.rates.keys().all(|k| crate::ports::costs::rated_usage(&k.usage_type) == Some(k.usage_type.as_str())));
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(utc_day("2018-08-01T00:00:00Z").unwrap(), "2018-08-01");
        assert_eq!(utc_day("2024-09-18 22:00:00").unwrap(), "2024-09-18");
        assert_eq!(utc_day("2024-09-18T23:30:00-02:00").unwrap(), "2024-09-19");
        assert_eq!(utc_day("2024-09-18T00:30:00+01:00").unwrap(), "2024-09-17");
        assert_eq!(utc_day("2024-09-18").unwrap(), "2024-09-18");
        for bad in ["", "yesterday", "2024-13-01T00:00:00Z", "2024/09/18"] {
            assert!(utc_day(bad).is_err(), "{bad}");
        }
    }

    const LEGACY: &str = "\u{feff}identity/LineItemId,bill/PayerAccountId,lineItem/UsageAccountId,lineItem/LineItemType,lineItem/UsageStartDate,lineItem/ProductCode,lineItem/UnblendedCost,lineItem/CurrencyCode,product/region,lineItem/LineItemDescription\r\n\
a,111,222,Usage,2024-01-01T00:00:00Z,AmazonEC2,1.5,USD,us-east-1,\"one, with a comma\"\r\n\
b,111,222,Usage,2024-01-01T05:00:00Z,AmazonEC2,0.25,USD,us-east-1,\"two\nlines\"\r\n\
c,111,222,Credit,2024-01-01T06:00:00Z,AmazonEC2,-0.75,USD,us-east-1,credit\r\n\
d,111,222,Tax,2024-01-01T00:00:00Z,AmazonEC2,,USD,,tax without a cost\r\n\
e,111,333,Usage,2024-01-02T00:00:00Z,AmazonS3,2,USD,eu-west-1,x\r\n";

    #[test]
    fn a_legacy_report_with_quotes_newlines_bom_crlf_and_empty_cells_is_summed() {
        let mut s = Summary::default();
        assert_eq!(
            s.add_report(LEGACY.as_bytes(), "r.csv").unwrap(),
            Layout::LegacyCur
        );
        assert_eq!(s.rows, 5);
        let got: Vec<(String, String, String, String)> = s
            .totals
            .iter()
            .map(|(k, c)| {
                (
                    k.day.clone(),
                    k.account.clone(),
                    k.region.clone(),
                    c.to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("2024-01-01".into(), "222".into(), "".into(), "0".into()),
                (
                    "2024-01-01".into(),
                    "222".into(),
                    "us-east-1".into(),
                    "1".into()
                ),
                (
                    "2024-01-02".into(),
                    "333".into(),
                    "eu-west-1".into(),
                    "2".into()
                ),
            ]
        );
    }

    /// The attacks a report from a shared bucket can make: one endless row (an unclosed
    /// quote, from a small gzip file), an endless report, endless distinct keys.
    #[test]
    fn a_report_past_a_limit_is_refused_naming_the_limit() {
        // 8 MiB of one unclosed quote, against the 1 MiB default: refused before the buffer
        // grows past the limit.
        let header = LEGACY.lines().next().unwrap();
        let endless = format!("{header}\na,111,222,Usage,2024-01-01T00:00:00Z,AmazonEC2,1,USD,us-east-1,\"{}", "x".repeat(8 << 20));
        let mut s = Summary::default();
        let e = s.add_report(endless.as_bytes(), "bomb.csv").unwrap_err();
        assert!(e.contains("bomb.csv: line 2") && e.contains("cur.max_row_bytes"), "{e}");
        // The whole report.
        let mut s = Summary {
            limits: Limits { max_report_bytes: 300, ..Limits::default() },
            ..Summary::default()
        };
        let e = s.add_report(LEGACY.as_bytes(), "big.csv").unwrap_err();
        assert!(e.contains("larger than 300 bytes") && e.contains("cur.max_report_bytes"), "{e}");
        let mut s = Summary {
            limits: Limits { max_report_bytes: LEGACY.len() as u64, ..Limits::default() },
            ..Summary::default()
        };
        assert!(s.add_report(LEGACY.as_bytes(), "exact.csv").is_ok(), "exactly the limit is read");
        // Distinct keys: the legacy sample has three sums.
        let mut s = Summary {
            limits: Limits { max_keys: 2, ..Limits::default() },
            ..Summary::default()
        };
        let e = s.add_report(LEGACY.as_bytes(), "keys.csv").unwrap_err();
        assert!(e.contains("more than 2 distinct") && e.contains("cur.max_keys"), "{e}");
    }

    #[test]
    fn bad_reports_name_the_file_line_and_column() {
        let mut s = Summary::default();
        let e = s.add_report("".as_bytes(), "empty.csv").unwrap_err();
        assert!(e.contains("empty.csv") && e.contains("empty"), "{e}");
        let e = s.add_report("a,b\n1,2\n".as_bytes(), "x.csv").unwrap_err();
        assert!(e.contains("not a cost report"), "{e}");
        let missing = "lineItem/UnblendedCost,lineItem/UsageStartDate\n1,2024-01-01\n";
        let e = s.add_report(missing.as_bytes(), "m.csv").unwrap_err();
        assert!(
            e.contains("m.csv: line 1") && e.contains("lineItem/UsageAccountId"),
            "{e}"
        );
        let bad_cost = LEGACY.replace("0.25", "lots");
        let e = s.add_report(bad_cost.as_bytes(), "c.csv").unwrap_err();
        assert_eq!(
            e,
            "c.csv: line 3, column lineItem/UnblendedCost: \"lots\" is not a number"
        );
        let bad_day = LEGACY.replace("2024-01-02T00:00:00Z", "soon");
        let e = s.add_report(bad_day.as_bytes(), "d.csv").unwrap_err();
        assert!(
            e.contains("d.csv: line 7, column lineItem/UsageStartDate"),
            "{e}"
        );
        let ragged = LEGACY.replace(",credit\r\n", ",credit,extra\r\n");
        let e = s.add_report(ragged.as_bytes(), "g.csv").unwrap_err();
        assert_eq!(e, "g.csv: line 5: 11 fields where the header has 10");
        // An error early in a long report ends it at once: the splitting thread, blocked on a
        // full hand-over, stops when the summing side gives up.
        let mut long = LEGACY.replace("0.25", "lots");
        for i in 0..200_000 {
            long.push_str(&format!("x{i},111,222,Usage,2024-01-01T00:00:00Z,AmazonEC2,1,USD,us-east-1,y\r\n"));
        }
        let e = s.add_report(long.as_bytes(), "l.csv").unwrap_err();
        assert!(e.starts_with("l.csv: line 3, column lineItem/UnblendedCost"), "{e}");
        // Short of trailing fields: read as empty.
        let short = LEGACY.replace(",credit\r\n", "\r\n");
        assert!(
            Summary::default()
                .add_report(short.as_bytes(), "s.csv")
                .is_ok()
        );
    }
}
