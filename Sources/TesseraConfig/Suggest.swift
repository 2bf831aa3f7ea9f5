/// "Did you mean" suggestions by Levenshtein distance.
enum Suggest {
    /// Edit distance where inserting, deleting or substituting a character, or swapping two
    /// adjacent characters, each cost 1 (optimal string alignment); case-insensitive.
    static func distance(_ a: String, _ b: String) -> Int {
        let s = Array(a.lowercased()), t = Array(b.lowercased())
        if s.isEmpty { return t.count }
        if t.isEmpty { return s.count }
        // d[i][j] = distance between s[..<i] and t[..<j]
        var d = [[Int]](repeating: [Int](repeating: 0, count: t.count + 1), count: s.count + 1)
        for i in 0...s.count { d[i][0] = i }
        for j in 0...t.count { d[0][j] = j }
        for i in 1...s.count {
            for j in 1...t.count {
                let cost = s[i - 1] == t[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, s[i - 1] == t[j - 2], s[i - 2] == t[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[s.count][t.count]
    }

    /// Largest distance still worth suggesting: a third of the shorter word, at least 1.
    static func threshold(_ word: String, _ spelling: String) -> Int {
        max(1, min(word.count, spelling.count) / 3)
    }

    /// The closest candidate within the threshold; ties go to the earlier candidate.
    static func closest(to word: String, among candidates: [String]) -> String? {
        closest(to: word, among: candidates.map { ($0, [$0]) })
    }

    /// The closest candidate, where each candidate may also be matched through its aliases
    /// (e.g. `lr` through `learning_rate`); `spellings[0]` is the name itself.
    static func closest(to word: String, among candidates: [(name: String, spellings: [String])]) -> String? {
        // Score 2·distance, plus 1 when matched through an alias, so real names win ties.
        var best: (name: String, score: Int)?
        for candidate in candidates {
            for (index, spelling) in candidate.spellings.enumerated() {
                let d = distance(word, spelling)
                guard d <= threshold(word, spelling) else { continue }
                let score = 2 * d + (index == 0 ? 0 : 1)
                if score < (best?.score ?? Int.max) { best = (candidate.name, score) }
            }
        }
        return best?.name
    }
}
