use netabase::NetabaseModel;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, netabase::Encode, netabase::Decode)]
#[bincode(crate = "netabase::bincode")]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

#[derive(NetabaseModel)]
pub struct Place {
    #[primary_key]
    pub id: u64,
    #[secondary_key]
    pub at: Point,
}

fn main() {}
