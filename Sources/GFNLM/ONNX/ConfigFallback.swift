/// Reads the numeric fields of a Hugging Face config.json beside the model, for what the graph lacks
/// (n_head, rotary_dim, n_positions). Returns nil when there is no config.json.
enum ConfigJSON {
    static func read(directory: String) throws(GFNError) -> [String: Double]? {
        let path = FileIO.join(directory, "config.json")
        guard FileIO.exists(path) else { return nil }
        // TODO: parse with the IO/JSON parser (branch `formats`) once it lands.
        return nil
    }
}
