namespace OrasStaging;

/// <summary>
/// The one wildcard matcher, with PowerShell's <c>-like</c> semantics (about_Wildcards) so a pattern means the same
/// in this module as at the prompt: <c>*</c> any run, <c>?</c> one character, <c>[abc]</c> one of a set,
/// <c>[a-z]</c> a range, a backtick escapes the next character; case-insensitive (invariant culture).
/// As in PowerShell, <c>!</c> inside brackets is an ordinary member of the set, not a negation: <c>[!a]</c> matches
/// "!" or "a". Where PowerShell rejects a pattern (an unclosed or empty bracket), the bracket is taken literally,
/// because the core has no prompt to report a pattern error to.
/// </summary>
internal static class Wildcard
{
    public static bool IsMatch(string pattern, string text)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(text);
        var tokens = Compile(pattern);

        // Classic two-pointer glob matching: on a mismatch, let the last '*' swallow one more character.
        int t = 0, p = 0, starToken = -1, starText = 0;
        while (t < text.Length)
        {
            if (p < tokens.Count && tokens[p].Kind != TokenKind.Star && tokens[p].Matches(text[t]))
            {
                t++;
                p++;
            }
            else if (p < tokens.Count && tokens[p].Kind == TokenKind.Star)
            {
                starToken = p++;
                starText = t;
            }
            else if (starToken >= 0)
            {
                p = starToken + 1;
                t = ++starText;
            }
            else
            {
                return false;
            }
        }

        while (p < tokens.Count && tokens[p].Kind == TokenKind.Star)
        {
            p++;
        }

        return p == tokens.Count;
    }

    private enum TokenKind
    {
        Literal,
        Any,
        Star,
        Set,
    }

    private sealed record Token(TokenKind Kind, char Char = default, List<(char From, char To)>? Ranges = null)
    {
        public bool Matches(char c) => Kind switch
        {
            TokenKind.Any => true,
            TokenKind.Literal => Same(Char, c),
            TokenKind.Set => Ranges!.Any(r => InRange(c, r.From, r.To)),
            _ => false,
        };
    }

    private static bool Same(char a, char b) => a == b || char.ToUpperInvariant(a) == char.ToUpperInvariant(b);

    private static bool InRange(char c, char from, char to)
    {
        char upper = char.ToUpperInvariant(c);
        char lower = char.ToLowerInvariant(c);
        return (c >= from && c <= to) || (upper >= from && upper <= to) || (lower >= from && lower <= to);
    }

    private static List<Token> Compile(string pattern)
    {
        var tokens = new List<Token>();
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            switch (c)
            {
                case '`' when i + 1 < pattern.Length:
                    tokens.Add(new Token(TokenKind.Literal, pattern[++i]));
                    break;
                case '*':
                    if (tokens.Count == 0 || tokens[^1].Kind != TokenKind.Star)
                    {
                        tokens.Add(new Token(TokenKind.Star));
                    }

                    break;
                case '?':
                    tokens.Add(new Token(TokenKind.Any));
                    break;
                case '[' when TryReadSet(pattern, i, out var ranges, out int end):
                    tokens.Add(new Token(TokenKind.Set, Ranges: ranges));
                    i = end;
                    break;
                default:
                    tokens.Add(new Token(TokenKind.Literal, c));
                    break;
            }
        }

        return tokens;
    }

    /// <summary>Reads <c>[...]</c> starting at <paramref name="open"/>; false when it is unclosed or empty.</summary>
    private static bool TryReadSet(string pattern, int open, out List<(char From, char To)> ranges, out int end)
    {
        ranges = new List<(char, char)>();
        var members = new List<char>();
        int i = open + 1;
        for (; i < pattern.Length && pattern[i] != ']'; i++)
        {
            members.Add(pattern[i] == '`' && i + 1 < pattern.Length ? pattern[++i] : pattern[i]);
        }

        end = i;
        if (i >= pattern.Length || members.Count == 0)
        {
            return false;
        }

        for (int m = 0; m < members.Count; m++)
        {
            if (m + 2 < members.Count && members[m + 1] == '-')
            {
                ranges.Add((members[m], members[m + 2]));
                m += 2;
            }
            else
            {
                ranges.Add((members[m], members[m]));
            }
        }

        return true;
    }
}
