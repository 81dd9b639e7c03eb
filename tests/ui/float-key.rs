use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub struct Reading {
    #[primary_key]
    pub id: u64,
    #[secondary_key]
    pub celsius: f64,
}

fn main() {}
