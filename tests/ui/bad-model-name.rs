use netabase::NetabaseModel;

#[derive(NetabaseModel)]
#[netabase(name = "")]
pub struct Empty {
    #[primary_key]
    pub id: u64,
}

#[derive(NetabaseModel)]
#[netabase(name = "users/v2")]
pub struct Slash {
    #[primary_key]
    pub id: u64,
}

#[derive(NetabaseModel)]
#[netabase(nmae = "User", name = "User")]
pub struct Typo {
    #[primary_key]
    pub id: u64,
}

#[derive(NetabaseModel)]
#[netabase(name = "A")]
#[netabase(name = "B")]
pub struct Twice {
    #[primary_key]
    pub id: u64,
}

fn main() {}
