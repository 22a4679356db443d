// `sqlx::migrate!` embeds the migration folders at compile time; rebuild when a file is added.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
