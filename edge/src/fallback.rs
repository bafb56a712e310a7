//! Object-store fallback: segments and init segments an origin no longer holds are read from
//! the archive the origins write, at `{stream}/{broadcast}/{rendition}/{file}`. A broadcast's
//! id is its first media sequence number, so the broadcast holding segment `msn` is the one
//! with the largest id not above it.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, ObjectStore};

use crate::object::{Class, Object};

/// Reads archived objects.
#[derive(Clone)]
pub(crate) struct Fallback {
    store: Arc<dyn ObjectStore>,
}

impl Fallback {
    /// Over `store`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        Fallback { store }
    }

    /// The archived bytes of `obj`, if it is a segment or init segment the archive holds.
    pub(crate) async fn find(&self, obj: &Object) -> Option<Bytes> {
        let rendition = obj.rendition.as_deref()?;
        if !matches!(obj.class, Class::Segment | Class::Init) {
            return None;
        }
        let listing = self
            .store
            .list_with_delimiter(Some(&StorePath::from(obj.stream.as_str())))
            .await
            .ok()?;
        let broadcasts = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.parse::<u64>().ok());
        let broadcast = match obj.msn {
            Some(msn) => broadcasts.filter(|b| *b <= msn).max()?,
            None => broadcasts.max()?,
        };
        let path = StorePath::from(format!(
            "{}/{broadcast}/{rendition}/{}",
            obj.stream, obj.file
        ));
        let got = self
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .ok()?;
        got.bytes().await.ok()
    }
}
