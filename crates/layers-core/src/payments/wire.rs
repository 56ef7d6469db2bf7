//! The Stripe objects Layers reads, as types (API version `stripe::API_VERSION`). Every field
//! Layers does not need is left out; a field that may be an id or an expanded object is read
//! as its id.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

/// An event, as a webhook delivers it and `GET /v1/events` lists it.
#[derive(Clone, Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub created: i64,
    pub data: EventData,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Customer {
    pub id: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
    pub mode: String,
    #[serde(default)]
    pub payment_status: String,
    #[serde(default)]
    pub amount_total: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "id_of")]
    pub customer: Option<String>,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default, deserialize_with = "id_of")]
    pub payment_intent: Option<String>,
    #[serde(default, deserialize_with = "id_of")]
    pub subscription: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub status: String,
    #[serde(default, deserialize_with = "id_of")]
    pub customer: Option<String>,
    pub items: List<SubscriptionItem>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SubscriptionItem {
    pub price: Price,
    #[serde(default)]
    pub current_period_end: Option<i64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Price {
    pub id: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Invoice {
    pub id: String,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default, deserialize_with = "id_of")]
    pub customer: Option<String>,
    #[serde(default)]
    pub amount_paid: i64,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub hosted_invoice_url: Option<String>,
    #[serde(default)]
    pub invoice_pdf: Option<String>,
    #[serde(default)]
    pub created: i64,
    #[serde(default, deserialize_with = "id_of")]
    pub subscription: Option<String>,
    #[serde(default)]
    pub billing_reason: Option<String>,
    #[serde(default, deserialize_with = "id_of")]
    pub payment_intent: Option<String>,
    #[serde(default, deserialize_with = "id_of")]
    pub charge: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Charge {
    pub id: String,
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub amount_refunded: i64,
    #[serde(default, deserialize_with = "id_of")]
    pub customer: Option<String>,
    #[serde(default, deserialize_with = "id_of")]
    pub payment_intent: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Dispute {
    pub id: String,
    #[serde(default)]
    pub amount: i64,
    #[serde(deserialize_with = "required_id")]
    pub charge: String,
    #[serde(default, deserialize_with = "id_of")]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub status: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub amount_received: i64,
    #[serde(default, deserialize_with = "id_of")]
    pub customer: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PaymentMethod {
    pub id: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PortalSession {
    pub url: String,
}

/// An id, or an expanded object's `id`, or nothing.
fn id_of<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IdOrObject {
        Id(String),
        Object { id: String },
    }
    Ok(Option::<IdOrObject>::deserialize(d)?.map(|v| match v {
        IdOrObject::Id(id) | IdOrObject::Object { id } => id,
    }))
}

fn required_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    id_of(d)?.ok_or_else(|| serde::de::Error::custom("missing id"))
}
