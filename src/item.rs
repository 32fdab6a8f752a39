//! Scraped items: any `serde::Serialize` value, type-erased.
//!
//! A spider emits values of its own types; pipelines see each as an [`Item`]
//! that can be read as JSON or downcast back to the spider's type, so a
//! pipeline that knows the type pays no conversion and one that does not
//! (a file or HTTP exporter) still works.

use std::any::Any;
use std::fmt;

use serde::Serialize;
use serde_json::Value;
use url::Url;
use uuid::Uuid;

use crate::error::{Error, ErrorKind, Stage};

/// What an item value must be: serialisable, sendable between actors, and
/// recoverable as its concrete type.
trait ItemValue: erased_serde::Serialize + Send + 'static {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn type_name(&self) -> &'static str;
}

impl<T: Serialize + Send + 'static> ItemValue for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// One scraped item.
pub struct Item(Box<dyn ItemValue>);

impl Item {
    /// Wraps a value.
    pub fn new<T: Serialize + Send + 'static>(value: T) -> Self {
        Item(Box::new(value))
    }

    /// The item as JSON.
    pub fn to_json(&self) -> Result<Value, Error> {
        serde_json::to_value(self)
            .map_err(|e| Error::new(Stage::Pipeline, ErrorKind::Json(e.to_string())))
    }

    /// The value, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }

    /// The value, mutably, if it is a `T`.
    pub fn downcast_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.0.as_any_mut().downcast_mut()
    }

    /// Takes the value out if it is a `T`, or gives the item back.
    pub fn downcast<T: 'static>(self) -> Result<T, Item> {
        if self.0.as_any().is::<T>() {
            Ok(*self.0.into_any().downcast::<T>().expect("type checked"))
        } else {
            Err(self)
        }
    }

    /// The Rust type name of the value, for logs.
    pub fn type_name(&self) -> &'static str {
        self.0.type_name()
    }
}

impl Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        erased_serde::serialize(&*self.0, serializer)
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => write!(f, "Item({json})"),
            Err(_) => write!(f, "Item(<{}>)", self.type_name()),
        }
    }
}

/// Where an item came from.
#[derive(Clone, Debug)]
pub struct ItemMeta {
    /// The id of the request whose response produced the item.
    pub request_id: Uuid,
    /// The URL of that response.
    pub url: Url,
    /// The spider's name.
    pub spider: std::sync::Arc<str>,
    /// The depth of the request.
    pub depth: u32,
    /// When the Scheduler dispatched the request (its dequeue), so the
    /// time from dequeue to the pipelines is `dispatched_at.elapsed()`.
    pub dispatched_at: Option<std::time::Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Debug, PartialEq)]
    struct Page {
        id: u32,
        title: String,
    }

    #[test]
    fn json_and_downcast() {
        let mut item = Item::new(Page {
            id: 1,
            title: "t".into(),
        });
        assert_eq!(
            item.to_json().unwrap(),
            serde_json::json!({"id": 1, "title": "t"})
        );
        item.downcast_mut::<Page>().unwrap().id = 2;
        assert!(item.downcast_ref::<String>().is_none());
        let back = item.downcast::<Page>().unwrap();
        assert_eq!(back.id, 2);
    }

    #[test]
    fn failed_downcast_gives_the_item_back() {
        let item = Item::new(5u8);
        let item = item.downcast::<String>().unwrap_err();
        assert_eq!(item.downcast::<u8>().unwrap(), 5);
    }
}
