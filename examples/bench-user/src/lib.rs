//! A user's models.

use netabase::NetabaseModel;

/// A customer, found by email or by city.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "Customer")]
pub struct Customer {
    #[primary_key]
    pub id: u64,
    #[secondary_key(unique)]
    pub email: String,
    #[secondary_key]
    pub city: String,
    pub notes: String,
}

/// An order, found by customer.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "Order")]
pub struct Order {
    #[primary_key]
    pub id: u64,
    #[secondary_key]
    pub customer: u64,
    pub total_cents: u64,
    pub lines: Vec<u8>,
}
