//! Prints the Rust types of a contracts directory:
//! `cargo run -p orion-bus-codegen --example gen -- DIR`.

fn main() {
    let dir = std::env::args().nth(1).expect("dir");
    match orion_bus_codegen::generate_dir(std::path::Path::new(&dir)) {
        Ok(code) => print!("{code}"),
        Err(e) => eprintln!("error: {e}"),
    }
}
