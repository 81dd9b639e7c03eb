use netabase::NetabaseModel;

#[derive(NetabaseModel)]
#[netabase(name = "A")]
struct A {
    #[primary_key]
    id: u64,
}

#[derive(NetabaseModel)]
#[netabase(name = "Zero", version = 0)]
struct Zero {
    #[primary_key]
    id: u64,
}

#[derive(NetabaseModel)]
#[netabase(name = "A", version = 2)]
struct NoFrom {
    #[primary_key]
    id: u64,
}

#[derive(NetabaseModel)]
#[netabase(name = "A", from = A)]
struct NoVersion {
    #[primary_key]
    id: u64,
}

fn main() {}
