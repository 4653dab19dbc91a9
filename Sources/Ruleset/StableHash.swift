/// A hash that is the same in every process and on every machine (Swift's Hasher is seeded per process),
/// so that every LB node with the same spec computes the same slot tables.
/// FNV-1a over the bytes, then the SplitMix64 finalizer to spread FNV's weak low bits.
public enum StableHash {
    public static func hash64(_ text: String, seed: UInt64 = 0) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h &*= 0x0000_0100_0000_01B3
        }
        return mix(h)
    }

    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public static func hash32(_ text: String) -> UInt32 {
        let h = hash64(text)
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }
}
