/// Reads the numeric fields of a Hugging Face config.json beside the model, for what the graph lacks
/// (n_head, rotary_dim, n_positions, rope base). Returns nil when there is no config.json.
enum ConfigJSON {
    static func read(directory: String) throws(GFNError) -> [String: Double]? {
        let path = FileIO.join(directory, "config.json")
        guard FileIO.exists(path) else { return nil }
        let json = try JSONValue.parse(contentsOf: path, limit: 1 << 24)
        guard let obj = json.object else { throw .format("\(path): expected a JSON object") }
        var out: [String: Double] = [:]
        for (k, v) in obj {
            if let d = v.double { out[k] = d }
        }
        return out
    }
}
