//! The `Metrics` port over CloudWatch `GetMetricData`: up to 500 queries a call (CloudWatch's
//! limit), each answer paged through (`NextToken`), values oldest first; a client per region.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_smithy_types::DateTime;

use super::classify;
use super::regional::Regional;
use crate::contract::StepError;
use crate::ports::resources::{MetricQuery, Metrics, Stat};

/// GetMetricData's limit of queries per call.
pub const QUERIES_PER_CALL: usize = 500;

#[derive(Debug)]
pub struct CloudWatchMetrics {
    clients: Regional<aws_sdk_cloudwatch::Client>,
}

impl CloudWatchMetrics {
    pub fn new(sdk: SdkConfig) -> CloudWatchMetrics {
        CloudWatchMetrics {
            clients: Regional::new(sdk, |sdk| {
                aws_sdk_cloudwatch::Client::from_conf(
                    aws_sdk_cloudwatch::config::Builder::from(sdk)
                        .interceptor(super::call_spans::CallSpans)
                        .build(),
                )
            }),
        }
    }
}

fn query(id: String, q: &MetricQuery, period_s: u32) -> MetricDataQuery {
    let stat = match q.stat {
        Stat::Average => "Average",
        Stat::Maximum => "Maximum",
    };
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(&q.namespace)
                        .metric_name(&q.metric)
                        .dimensions(
                            Dimension::builder()
                                .name(&q.dimension)
                                .value(&q.value)
                                .build(),
                        )
                        .build(),
                )
                .period(i32::try_from(period_s).unwrap_or(i32::MAX))
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

#[async_trait]
impl Metrics for CloudWatchMetrics {
    async fn series(
        &self,
        region: &str,
        queries: &[MetricQuery],
        start_ms: u64,
        end_ms: u64,
        period_s: u32,
    ) -> Result<Vec<Vec<f64>>, StepError> {
        let client = self.clients.get(region);
        let ms = |t: u64| DateTime::from_millis(i64::try_from(t).unwrap_or(i64::MAX));
        let mut values: Vec<Vec<f64>> = vec![Vec::new(); queries.len()];
        for (chunk_at, chunk) in queries.chunks(QUERIES_PER_CALL).enumerate() {
            let base = chunk_at * QUERIES_PER_CALL;
            // Ids must start with a lower-case letter: `q<index>`.
            let requests: Vec<MetricDataQuery> = chunk
                .iter()
                .enumerate()
                .map(|(i, q)| query(format!("q{}", base + i), q, period_s))
                .collect();
            let pages = client
                .get_metric_data()
                .set_metric_data_queries(Some(requests))
                .start_time(ms(start_ms))
                .end_time(ms(end_ms))
                .scan_by(ScanBy::TimestampAscending)
                .into_paginator()
                .send()
                .collect::<Vec<_>>()
                .await;
            for page in pages {
                let page = page.map_err(|e| classify("GetMetricData", e))?;
                for r in page.metric_data_results() {
                    // `q<index>`, as asked: the query's place in `queries`.
                    let at = r
                        .id()
                        .and_then(|id| id.strip_prefix('q')?.parse::<usize>().ok());
                    if let Some(series) = at.and_then(|at| values.get_mut(at)) {
                        series.extend_from_slice(r.values());
                    }
                }
            }
        }
        Ok(values)
    }
}
