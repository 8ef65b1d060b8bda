fn main() {
    for crd in switchboard::api::crds() {
        println!("---\n{}", yaml_serde::to_string(&crd).unwrap());
    }
}
