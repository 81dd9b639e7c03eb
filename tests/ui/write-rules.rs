use netabase::{NetabaseModel, PeerId};

#[derive(NetabaseModel)]
#[netabase(write = "owner")]
pub struct NoOwnerField {
    #[primary_key]
    pub id: u64,
}

#[derive(NetabaseModel)]
#[netabase(write = "owner")]
pub struct OwnerNotAPeer {
    #[primary_key]
    pub id: u64,
    #[owner]
    pub owner: String,
}

#[derive(NetabaseModel)]
#[netabase(write = "owner")]
pub struct TwoOwners {
    #[primary_key]
    pub id: u64,
    #[owner]
    pub owner: PeerId,
    #[owner]
    pub other: PeerId,
}

#[derive(NetabaseModel)]
#[netabase(write = "ownr")]
pub struct Misspelt {
    #[primary_key]
    pub id: u64,
}

#[derive(NetabaseModel)]
#[netabase(write = "everyone")]
pub struct Unknown {
    #[primary_key]
    pub id: u64,
}

#[derive(NetabaseModel)]
pub struct OwnerWithoutRule {
    #[primary_key]
    pub id: u64,
    #[owner]
    pub owner: PeerId,
}

pub struct NotARule;

#[derive(NetabaseModel)]
#[netabase(write = NotARule)]
pub struct CustomNotARule {
    #[primary_key]
    pub id: u64,
}

fn main() {}
