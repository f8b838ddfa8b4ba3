//! What an ONNX file says about the files beside it: the external weight files its tensors are
//! stored in (ONNX's `external_data`, as exporters write models over 2 GB, and as MLflow's
//! `onnx` flavor saves them). Read with just the fields that lead to a tensor's location; every
//! other field of the file is skipped.

use std::collections::BTreeSet;

/// `ModelProto`: the graph.
#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

/// `GraphProto`: nodes (whose attributes may hold tensors and subgraphs) and initializers.
#[derive(Clone, PartialEq, prost::Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
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
    Ok(files.into_iter().collect())
}

fn collect_graph(g: &GraphProto, files: &mut BTreeSet<String>) {
    for t in &g.initializer {
        collect_tensor(t, files);
    }
    for a in g.node.iter().flat_map(|n| &n.attribute) {
        a.t.iter().chain(&a.tensors).for_each(|t| collect_tensor(t, files));
        a.g.iter().map(|g| &**g).chain(&a.graphs).for_each(|g| collect_graph(g, files));
    }
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
        let sub = GraphProto { node: vec![], initializer: vec![external("sub.bin")] };
        let graph = GraphProto {
            node: vec![NodeProto {
                attribute: vec![AttributeProto {
                    t: Some(external("attr.bin")),
                    g: Some(Box::new(sub)),
                    tensors: vec![],
                    graphs: vec![],
                }],
            }],
            initializer: vec![external("w.bin"), external("w.bin"), inline],
        };
        let bytes = ModelProto { graph: Some(graph) }.encode_to_vec();
        assert_eq!(external_files(&bytes).unwrap(), ["attr.bin", "sub.bin", "w.bin"]);
        assert!(external_files(b"\xff\xff\xff not onnx").unwrap_err().contains("not an ONNX model"));
    }
}
