//! Batch publishing (`groups-batch`): Herald's publisher sends every event that is due at once
//! in one `POST /api/publish` with `{"events": [...]}`, as a back-end with a backlog would.
//! nchan has no batch publish: in this scenario it is published to one event at a time, as in
//! `groups`.

use std::rc::Rc;

use anyhow::Result;

use super::{Pace, Run};
use crate::publish::Publisher;

/// The most events in one batch (Herald takes up to 1,000 in one request).
const MAX_BATCH: usize = 100;
/// Publishing connections. Each owns the streams whose number modulo this is its own, and
/// sends their events in order, one batch at a time: a stream's events never wait for another
/// connection.
const PUBLISHERS: usize = 8;

impl Run {
    /// Publishes `total` events at `rate` in batches; returns the rate reached.
    pub(super) async fn publish_batches(&mut self, rate: f64, total: u64) -> Result<f64> {
        let streams = self.plan.streams.len() as u64;
        let publishers = PUBLISHERS.min(self.plan.streams.len()) as u64;
        let plan = Rc::new(self.plan.clone());
        let pace = Pace::start(rate);
        let mut tasks = Vec::new();
        for owner in 0..publishers {
            let plan = Rc::clone(&plan);
            let counts = Rc::clone(&self.counts);
            let mut publisher = Publisher::new(self.args.addr, self.args.token.clone());
            let owned = move |index: u64| (index % streams) % publishers == owner;
            let next_owned = move |mut index: u64| {
                index += 1;
                while index < total && !owned(index) {
                    index += 1;
                }
                index
            };
            tasks.push(tokio::task::spawn_local(async move {
                let (mut failures, mut first_error) = (0u64, None);
                let mut index = if owned(0) { 0 } else { next_owned(0) };
                let mut body = Vec::new();
                let mut batch: Vec<usize> = Vec::with_capacity(MAX_BATCH);
                while index < total {
                    let mut due_us = pace.wait(index).await;
                    body.clear();
                    body.extend_from_slice(b"{\"events\":[");
                    batch.clear();
                    loop {
                        let stream = (index % streams) as usize;
                        // Events of one stream in one batch are numbered one after another.
                        let earlier = batch.iter().filter(|&&other| other == stream).count();
                        let number = counts.borrow()[stream] + earlier as u64;
                        if !batch.is_empty() {
                            body.push(b',');
                        }
                        body.extend_from_slice(&plan.body(stream, number, due_us));
                        batch.push(stream);
                        index = next_owned(index);
                        match pace.due_now(index) {
                            Some(due) if index < total && batch.len() < MAX_BATCH => due_us = due,
                            _ => break,
                        }
                    }
                    body.extend_from_slice(b"]}");
                    match publisher.post("/api/publish", &body).await {
                        Ok(code) if (200..300).contains(&code) => {
                            let mut counts = counts.borrow_mut();
                            for &stream in &batch {
                                counts[stream] += 1;
                            }
                        }
                        Ok(code) => {
                            failures += batch.len() as u64;
                            first_error.get_or_insert(format!("batch publish answered {code}"));
                        }
                        Err(err) => {
                            failures += batch.len() as u64;
                            first_error.get_or_insert(format!("batch publish failed: {err:#}"));
                        }
                    }
                }
                (failures, first_error)
            }));
        }
        self.join_publishers(tasks).await?;
        let span = pace.started.elapsed().as_secs_f64().max(1.0 / rate);
        Ok((total as f64 / span).min(rate))
    }
}
