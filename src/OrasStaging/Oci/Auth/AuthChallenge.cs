using System.Text;

namespace OrasStaging.Oci.Auth;

/// <summary>One challenge of a WWW-Authenticate header (RFC 7235): a scheme and its auth-params.</summary>
internal sealed record AuthChallenge(string Scheme, IReadOnlyDictionary<string, string> Parameters)
{
    public string? this[string name] => Parameters.TryGetValue(name, out var v) ? v : null;

    public bool IsBearer => Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase);

    public bool IsBasic => Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Parses every challenge in the header values. Quoted strings may hold commas (a scope such as
    /// <c>repository:a:pull,push</c>) and backslash escapes; a new challenge starts at a token that is not
    /// followed by '='.
    /// </summary>
    public static IReadOnlyList<AuthChallenge> Parse(IEnumerable<string> headerValues)
    {
        var result = new List<AuthChallenge>();
        foreach (string header in headerValues)
        {
            ParseOne(header, result);
        }

        return result;
    }

    private static void ParseOne(string s, List<AuthChallenge> result)
    {
        int i = 0;
        string? scheme = null;
        Dictionary<string, string>? parameters = null;

        void Flush()
        {
            if (scheme is not null)
            {
                result.Add(new AuthChallenge(scheme, parameters!));
            }
        }

        while (i < s.Length)
        {
            while (i < s.Length && (s[i] == ',' || char.IsWhiteSpace(s[i])))
            {
                i++;
            }

            int start = i;
            while (i < s.Length && IsTokenChar(s[i]))
            {
                i++;
            }

            if (i == start)
            {
                i++; // garbage; skip one character
                continue;
            }

            string token = s[start..i];
            int j = i;
            while (j < s.Length && s[j] == ' ')
            {
                j++;
            }

            if (j < s.Length && s[j] == '=' && scheme is not null && !(j + 1 < s.Length && s[j + 1] == '='))
            {
                i = j + 1;
                while (i < s.Length && s[i] == ' ')
                {
                    i++;
                }

                string value;
                if (i < s.Length && s[i] == '"')
                {
                    var sb = new StringBuilder();
                    i++;
                    while (i < s.Length && s[i] != '"')
                    {
                        if (s[i] == '\\' && i + 1 < s.Length)
                        {
                            i++;
                        }

                        sb.Append(s[i]);
                        i++;
                    }

                    i++; // closing quote
                    value = sb.ToString();
                }
                else
                {
                    int vs = i;
                    while (i < s.Length && s[i] != ',' && !char.IsWhiteSpace(s[i]))
                    {
                        i++;
                    }

                    value = s[vs..i];
                }

                parameters![token.ToLowerInvariant()] = value;
            }
            else
            {
                Flush();
                scheme = token;
                parameters = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                i = j;
            }
        }

        Flush();
    }

    private static bool IsTokenChar(char c) =>
        char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c);
}
