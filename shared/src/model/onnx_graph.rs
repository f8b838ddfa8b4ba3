//! What an ONNX file says about the files beside it: the external weight files its tensors are
//! stored in (ONNX's `external_data`, as exporters write models over 2 GB, and as MLflow's
//! `onnx` flavor saves them). Read with just the fields that lead to a tensor's location — in
//! the graph, its sparse initializers, node attributes and their subgraphs, and local functions;
//! every other field of the file is skipped.

use std::collections::BTreeSet;

/// The file name an imported graph is stored and loaded under; no external file may take it.
pub const GRAPH_FILE: &str = "model.onnx";

/// `ModelProto`: the graph, and local functions (whose nodes may hold tensors).
#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "25")]
    functions: Vec<FunctionProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FunctionProto {
    #[prost(message, repeated, tag = "7")]
    node: Vec<NodeProto>,
}

/// `GraphProto`: nodes (whose attributes may hold tensors and subgraphs) and initializers.
#[derive(Clone, PartialEq, prost::Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "15")]
    sparse_initializer: Vec<SparseTensorProto>,
}

/// A sparse tensor: its values and indices are tensors.
#[derive(Clone, PartialEq, prost::Message)]
struct SparseTensorProto {
    #[prost(message, optional, tag = "1")]
    values: Option<TensorProto>,
    #[prost(message, optional, tag = "2")]
    indices: Option<TensorProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NodeProto {
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AttributeProto {
    #[prost(message, optional, tag = "5")]
    t: Option<TensorProto>,
    #[prost(message, optional, boxed, tag = "6")]
    g: Option<Box<GraphProto>>,
    #[prost(message, repeated, tag = "10")]
    tensors: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    graphs: Vec<GraphProto>,
    #[prost(message, optional, tag = "22")]
    sparse_tensor: Option<SparseTensorProto>,
    #[prost(message, repeated, tag = "23")]
    sparse_tensors: Vec<SparseTensorProto>,
}

/// `TensorProto`: where its data is.
#[derive(Clone, PartialEq, prost::Message)]
struct TensorProto {
    #[prost(message, repeated, tag = "13")]
    external_data: Vec<StringStringEntryProto>,
    /// 1: EXTERNAL.
    #[prost(int32, tag = "14")]
    data_location: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// The relative paths of the external files `graph`'s tensors are stored in, sorted; an error
/// when `graph` is not an ONNX model.
pub fn external_files(graph: &[u8]) -> Result<Vec<String>, String> {
    let model = <ModelProto as prost::Message>::decode(graph).map_err(|e| format!("not an ONNX model: {e}"))?;
    let mut files = BTreeSet::new();
    if let Some(g) = &model.graph {
        collect_graph(g, &mut files);
    }
    collect_nodes(model.functions.iter().flat_map(|f| &f.node), &mut files);
    Ok(files.into_iter().collect())
}

/// Refuses an external file name that is not a plain relative path (no `..`, not absolute),
/// or that is the graph's own: such a file could land outside the directory it is laid out in.
pub fn check_external_name(name: &str) -> Result<(), String> {
    let Some(parts) = plain_relative(name) else {
        return Err(format!("external file {name:?}: name it by a relative path without `..`"));
    };
    if parts == [GRAPH_FILE] {
        return Err(format!("external file {name:?}: that is the graph's own name"));
    }
    Ok(())
}

/// The parts of `path` when it is a plain relative path (`./` allowed, no `..`, not absolute,
/// not empty): a file inside whatever directory it is taken from.
pub fn plain_relative(path: &str) -> Option<Vec<&str>> {
    use std::path::{Component, Path};
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_str()?),
            _ => return None,
        }
    }
    (!parts.is_empty()).then_some(parts)
}

fn collect_graph(g: &GraphProto, files: &mut BTreeSet<String>) {
    g.initializer.iter().for_each(|t| collect_tensor(t, files));
    g.sparse_initializer.iter().for_each(|s| collect_sparse(s, files));
    collect_nodes(&g.node, files);
}

fn collect_nodes<'a>(nodes: impl IntoIterator<Item = &'a NodeProto>, files: &mut BTreeSet<String>) {
    for a in nodes.into_iter().flat_map(|n| &n.attribute) {
        a.t.iter().chain(&a.tensors).for_each(|t| collect_tensor(t, files));
        a.sparse_tensor.iter().chain(&a.sparse_tensors).for_each(|s| collect_sparse(s, files));
        a.g.iter().map(|g| &**g).chain(&a.graphs).for_each(|g| collect_graph(g, files));
    }
}

fn collect_sparse(s: &SparseTensorProto, files: &mut BTreeSet<String>) {
    s.values.iter().chain(&s.indices).for_each(|t| collect_tensor(t, files));
}

fn collect_tensor(t: &TensorProto, files: &mut BTreeSet<String>) {
    if t.data_location == 1 {
        files.extend(t.external_data.iter().filter(|e| e.key == "location").map(|e| e.value.clone()));
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn finds_the_files_of_external_tensors_in_graphs_and_subgraphs() {
        let external = |file: &str| TensorProto {
            external_data: vec![
                StringStringEntryProto { key: "location".into(), value: file.into() },
                StringStringEntryProto { key: "offset".into(), value: "0".into() },
            ],
            data_location: 1,
        };
        let inline = TensorProto { external_data: vec![], data_location: 0 };
        let sparse = |file: &str| SparseTensorProto { values: Some(external(file)), indices: None };
        let sub = GraphProto { node: vec![], initializer: vec![external("sub.bin")], sparse_initializer: vec![] };
        let attribute = AttributeProto {
            t: Some(external("attr.bin")),
            g: Some(Box::new(sub)),
            tensors: vec![],
            graphs: vec![],
            sparse_tensor: Some(sparse("attr-sparse.bin")),
            sparse_tensors: vec![],
        };
        let graph = GraphProto {
            node: vec![NodeProto { attribute: vec![attribute.clone()] }],
            initializer: vec![external("w.bin"), external("w.bin"), inline],
            sparse_initializer: vec![sparse("sparse.bin")],
        };
        let function_attribute = AttributeProto { t: Some(external("function.bin")), g: None, ..attribute };
        let functions = vec![FunctionProto { node: vec![NodeProto { attribute: vec![function_attribute] }] }];
        let bytes = ModelProto { graph: Some(graph), functions }.encode_to_vec();
        let expected = ["attr-sparse.bin", "attr.bin", "function.bin", "sparse.bin", "sub.bin", "w.bin"];
        assert_eq!(external_files(&bytes).unwrap(), expected);
        assert!(external_files(b"\xff\xff\xff not onnx").unwrap_err().contains("not an ONNX model"));
    }

    #[test]
    fn only_plain_relative_names_other_than_the_graph_s_are_external_files() {
        for good in ["w.bin", "weights/part-1.bin", "./w.bin"] {
            assert_eq!(check_external_name(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "/etc/passwd", "../w.bin", "a/../../w.bin", GRAPH_FILE, "./model.onnx"] {
            assert!(check_external_name(bad).is_err(), "{bad}");
        }
    }
}
