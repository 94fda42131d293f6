//! Mounts the Herald console.

fn main() {
    leptos::mount::mount_to_body(herald_frontend::App);
}
