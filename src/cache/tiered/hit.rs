//! A hit: the whole body, already in memory, served at once or as one range.

use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::key::CacheKey;
use pingora_cache::storage::{HandleHit, HitHandler, Storage};
use pingora_cache::trace::SpanHandle;
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;

pub(super) struct Hit {
    body: Bytes,
    done: bool,
    start: usize,
    end: usize,
}

impl Hit {
    pub(super) fn handler(body: Bytes) -> HitHandler {
        let end = body.len();
        Box::new(Hit {
            body,
            done: false,
            start: 0,
            end,
        })
    }
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if start >= self.body.len() {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start out of range {start} >= {}", self.body.len()),
            );
        }
        self.start = start;
        self.end = end.map_or(self.body.len(), |e| e.min(self.body.len()));
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}
