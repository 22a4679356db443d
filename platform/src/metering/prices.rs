//! The price table and the invoice preview.
//!
//! A rule prices one or more metrics together (Calls and TURN egress share one free tier), in a
//! unit (GB = 10^9 bytes, 1,000 minutes, …) with a monthly free allowance. Free allowances reset
//! on the first of each UTC month, so an invoice for an arbitrary range is computed month by
//! month: the usage already consumed earlier in the same month counts against the allowance
//! first, and the range is charged only for the marginal billable units. Summing invoices of
//! adjacent ranges therefore equals the invoice of their union.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};

use super::{usage_totals, Metric};
use crate::{db::DbError, Db};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PriceRule {
    /// Line item name shown on the invoice.
    pub name: String,
    pub metrics: Vec<Metric>,
    /// Name of the billing unit, e.g. "GB".
    pub unit: String,
    /// How many raw metric units make one billing unit.
    pub unit_quantity: f64,
    /// Price of one billing unit in USD.
    pub price_usd: f64,
    /// Billing units free per calendar month (UTC).
    #[serde(default)]
    pub free_units_per_month: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PriceTable {
    pub rule: Vec<PriceRule>,
}

impl Default for PriceTable {
    /// The public list prices of the products Mediaplane matches (see docs/operations.md).
    fn default() -> Self {
        let rule = |name: &str,
                    metrics: &[Metric],
                    unit: &str,
                    unit_quantity: f64,
                    price_usd: f64,
                    free: f64| PriceRule {
            name: name.to_string(),
            metrics: metrics.to_vec(),
            unit: unit.to_string(),
            unit_quantity,
            price_usd,
            free_units_per_month: free,
        };
        PriceTable {
            rule: vec![
                rule(
                    "calls_egress",
                    &[Metric::CallsEgressBytes, Metric::TurnEgressBytes],
                    "GB",
                    1e9,
                    0.05,
                    1000.0,
                ),
                rule(
                    "stream_minutes_stored",
                    &[Metric::StreamMinutesStored],
                    "1,000 minutes",
                    1000.0,
                    5.0,
                    0.0,
                ),
                rule(
                    "stream_minutes_delivered",
                    &[Metric::StreamMinutesDelivered],
                    "1,000 minutes",
                    1000.0,
                    1.0,
                    0.0,
                ),
                rule(
                    "images_transformations",
                    &[Metric::ImagesTransformations],
                    "1,000 transformations",
                    1000.0,
                    0.5,
                    5.0,
                ),
                rule(
                    "images_stored",
                    &[Metric::ImagesStored],
                    "100,000 images",
                    100_000.0,
                    5.0,
                    0.0,
                ),
                rule(
                    "images_delivered",
                    &[Metric::ImagesDelivered],
                    "100,000 images",
                    100_000.0,
                    1.0,
                    0.0,
                ),
            ],
        }
    }
}

impl PriceTable {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let table: PriceTable = toml::from_str(text).map_err(|e| e.to_string())?;
        for rule in &table.rule {
            if !(rule.unit_quantity > 0.0
                && rule.price_usd >= 0.0
                && rule.free_units_per_month >= 0.0)
            {
                return Err(format!(
                    "price rule {:?}: unit_quantity must be > 0, prices and free units >= 0",
                    rule.name
                ));
            }
        }
        Ok(table)
    }

    /// The invoice preview for `[since_ms, until_ms)`.
    pub async fn invoice(
        &self,
        db: &Db,
        account_id: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Invoice, DbError> {
        let mut lines: Vec<InvoiceLine> = self
            .rule
            .iter()
            .map(|rule| InvoiceLine {
                name: rule.name.clone(),
                unit: rule.unit.clone(),
                metrics: rule
                    .metrics
                    .iter()
                    .map(|m| (m.as_str().to_string(), 0.0))
                    .collect(),
                quantity: 0.0,
                billable_units: 0.0,
                price_usd: rule.price_usd,
                cost_usd: 0.0,
            })
            .collect();
        for (month_start, month_end) in months_overlapping(since_ms, until_ms) {
            let from = since_ms.max(month_start);
            let to = until_ms.min(month_end);
            let before = usage_totals(db, account_id, month_start, from).await?;
            let inside = usage_totals(db, account_id, from, to).await?;
            for (rule, line) in self.rule.iter().zip(lines.iter_mut()) {
                let sum = |totals: &HashMap<Metric, f64>| {
                    rule.metrics
                        .iter()
                        .map(|m| totals.get(m).copied().unwrap_or(0.0))
                        .sum::<f64>()
                };
                let used_before = sum(&before) / rule.unit_quantity;
                let used_inside = sum(&inside) / rule.unit_quantity;
                let billable = |units: f64| (units - rule.free_units_per_month).max(0.0);
                let marginal = billable(used_before + used_inside) - billable(used_before);
                line.billable_units += marginal;
                line.quantity += sum(&inside);
                for (name, quantity) in line.metrics.iter_mut() {
                    if let Some(metric) = Metric::parse(name) {
                        *quantity += inside.get(&metric).copied().unwrap_or(0.0);
                    }
                }
            }
        }
        for line in &mut lines {
            line.cost_usd = round_cents(line.billable_units * line.price_usd);
        }
        let total_usd = round_cents(lines.iter().map(|l| l.cost_usd).sum());
        Ok(Invoice {
            since_ms,
            until_ms,
            lines,
            total_usd,
        })
    }
}

/// Money is shown to 1/10,000 of a dollar so small test usages stay visible.
fn round_cents(usd: f64) -> f64 {
    (usd * 10_000.0).round() / 10_000.0
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InvoiceLine {
    pub name: String,
    pub unit: String,
    /// Raw quantity per metric in the range.
    pub metrics: Vec<(String, f64)>,
    /// Raw quantity of all the rule's metrics in the range.
    pub quantity: f64,
    /// Billing units charged in the range after free allowances.
    pub billable_units: f64,
    pub price_usd: f64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Invoice {
    pub since_ms: i64,
    pub until_ms: i64,
    pub lines: Vec<InvoiceLine>,
    pub total_usd: f64,
}

fn month_start_ms(year: i32, month: Month) -> i64 {
    let date = Date::from_calendar_date(year, month, 1).unwrap_or(Date::MIN);
    date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * 1000
}

/// `[start, end)` of every UTC calendar month that overlaps `[since_ms, until_ms)`.
fn months_overlapping(since_ms: i64, until_ms: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    if until_ms <= since_ms {
        return out;
    }
    let Ok(start) = OffsetDateTime::from_unix_timestamp(since_ms.div_euclid(1000)) else {
        return out;
    };
    let (mut year, mut month) = (start.year(), start.month());
    loop {
        let begin = month_start_ms(year, month);
        if begin >= until_ms || out.len() > 1200 {
            break;
        }
        let (next_year, next_month) = if month == Month::December {
            (year + 1, Month::January)
        } else {
            (year, month.next())
        };
        let end = month_start_ms(next_year, next_month);
        out.push((begin, end));
        (year, month) = (next_year, next_month);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::Meter;
    use std::time::Duration;

    fn ms(y: i32, m: Month, d: u8, h: u8) -> i64 {
        Date::from_calendar_date(y, m, d)
            .unwrap()
            .with_hms(h, 0, 0)
            .unwrap()
            .assume_utc()
            .unix_timestamp()
            * 1000
    }

    #[test]
    fn months_split_at_boundaries() {
        let months = months_overlapping(
            ms(2026, Month::November, 30, 22),
            ms(2027, Month::January, 2, 0),
        );
        assert_eq!(
            months,
            vec![
                (
                    ms(2026, Month::November, 1, 0),
                    ms(2026, Month::December, 1, 0)
                ),
                (
                    ms(2026, Month::December, 1, 0),
                    ms(2027, Month::January, 1, 0)
                ),
                (
                    ms(2027, Month::January, 1, 0),
                    ms(2027, Month::February, 1, 0)
                ),
            ]
        );
        assert!(months_overlapping(5, 5).is_empty());
    }

    #[test]
    fn price_file_overrides_and_validates() {
        let table = PriceTable::from_toml(
            "[[rule]]\nname = \"x\"\nmetrics = [\"images.delivered\"]\nunit = \"image\"\nunit_quantity = 1\nprice_usd = 0.01\n",
        )
        .unwrap();
        assert_eq!(table.rule[0].metrics, vec![Metric::ImagesDelivered]);
        assert_eq!(table.rule[0].free_units_per_month, 0.0);
        assert!(PriceTable::from_toml("[[rule]]\nname = \"x\"\nmetrics = []\nunit = \"u\"\nunit_quantity = 0\nprice_usd = 1\n").is_err());
        assert!(PriceTable::from_toml("[[rule]]\nname = \"x\"\nmetrics = [\"nope\"]\nunit = \"u\"\nunit_quantity = 1\nprice_usd = 1\n").is_err());
    }

    #[tokio::test]
    async fn invoice_applies_shared_free_tiers_per_month() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(
            &format!("sqlite://{}/p.db?mode=rwc", dir.path().display()),
            4,
        )
        .await
        .unwrap();
        db.migrate().await.unwrap();
        let meter = Meter::start(db.clone(), Duration::from_secs(3600));
        let acct = "acct";
        // November: 800 GB through the SFU + 300 GB through TURN = 1,100 GB; 1,000 GB free → 100 GB billable.
        meter.record_at(
            acct,
            Metric::CallsEgressBytes,
            800e9,
            ms(2026, Month::November, 10, 0),
        );
        meter.record_at(
            acct,
            Metric::TurnEgressBytes,
            300e9,
            ms(2026, Month::November, 20, 0),
        );
        // December: 10 GB — inside a fresh free allowance.
        meter.record_at(
            acct,
            Metric::CallsEgressBytes,
            10e9,
            ms(2026, Month::December, 1, 0),
        );
        // Images: 7,000 unique transformations in November (5,000 free → 2,000 billable = $1.00).
        meter.record_at(
            acct,
            Metric::ImagesTransformations,
            7000.0,
            ms(2026, Month::November, 15, 0),
        );
        // Stream: 2,500 minutes delivered ($2.50), 1,000 stored ($5).
        meter.record_at(
            acct,
            Metric::StreamMinutesDelivered,
            2500.0,
            ms(2026, Month::November, 15, 0),
        );
        meter.record_at(
            acct,
            Metric::StreamMinutesStored,
            1000.0,
            ms(2026, Month::November, 15, 0),
        );
        // Another account's usage never shows up.
        meter.record_at(
            "other",
            Metric::CallsEgressBytes,
            5000e9,
            ms(2026, Month::November, 15, 0),
        );
        meter.shutdown().await;

        let table = PriceTable::default();
        let line =
            |inv: &Invoice, name: &str| inv.lines.iter().find(|l| l.name == name).unwrap().clone();

        let whole = table
            .invoice(
                &db,
                acct,
                ms(2026, Month::November, 1, 0),
                ms(2027, Month::January, 1, 0),
            )
            .await
            .unwrap();
        let egress = line(&whole, "calls_egress");
        assert_eq!(egress.quantity, 1110e9);
        assert!((egress.billable_units - 100.0).abs() < 1e-9);
        assert_eq!(egress.cost_usd, 5.0);
        assert_eq!(line(&whole, "images_transformations").cost_usd, 1.0);
        assert_eq!(line(&whole, "stream_minutes_delivered").cost_usd, 2.5);
        assert_eq!(line(&whole, "stream_minutes_stored").cost_usd, 5.0);
        assert_eq!(whole.total_usd, 13.5);

        // A range starting after the SFU usage: TURN's 300 GB counts against what is left of the
        // November allowance (200 GB), so 100 GB are billable in this range and none before it.
        let late = table
            .invoice(
                &db,
                acct,
                ms(2026, Month::November, 15, 0),
                ms(2026, Month::December, 1, 0),
            )
            .await
            .unwrap();
        assert!((line(&late, "calls_egress").billable_units - 100.0).abs() < 1e-9);
        let early = table
            .invoice(
                &db,
                acct,
                ms(2026, Month::November, 1, 0),
                ms(2026, Month::November, 15, 0),
            )
            .await
            .unwrap();
        assert_eq!(line(&early, "calls_egress").billable_units, 0.0);

        // December alone: 10 GB, all free.
        let december = table
            .invoice(
                &db,
                acct,
                ms(2026, Month::December, 1, 0),
                ms(2027, Month::January, 1, 0),
            )
            .await
            .unwrap();
        assert_eq!(line(&december, "calls_egress").quantity, 10e9);
        assert_eq!(december.total_usd, 0.0);
    }
}
