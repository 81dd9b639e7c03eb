use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub struct Pair(#[primary_key] u64, String);

fn main() {}
