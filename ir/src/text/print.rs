use crate::Graph;
pub fn print(_g: &Graph) -> String {
    todo!("in progress")
}
