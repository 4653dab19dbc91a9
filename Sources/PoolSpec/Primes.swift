/// Source-hash slot tables must have a prime size (Maglev permutations need it).
public enum Primes {
    public static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }

    public static func next(atLeast n: Int) -> Int {
        var c = max(n, 2)
        while !isPrime(c) { c += 1 }
        return c
    }
}
