using System.Globalization;

namespace OrasStaging.TestKit;

/// <summary>"--name value" and "--flag" arguments; unknown names are errors so typos fail loudly.</summary>
internal sealed class Cli
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _used = new(StringComparer.OrdinalIgnoreCase);

    public Cli(IEnumerable<string> args, params string[] flags)
    {
        var flagSet = new HashSet<string>(flags, StringComparer.OrdinalIgnoreCase);
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            var a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal))
            {
                throw new ArgumentException($"unexpected argument '{a}'");
            }
            var name = a[2..];
            var eq = name.IndexOf('=');
            if (eq >= 0)
            {
                _values[name[..eq]] = name[(eq + 1)..];
            }
            else if (flagSet.Contains(name))
            {
                _values[name] = null;
            }
            else
            {
                if (i + 1 >= list.Count) throw new ArgumentException($"--{name} needs a value");
                _values[name] = list[++i];
            }
        }
    }

    public bool Flag(string name)
    {
        _used.Add(name);
        return _values.ContainsKey(name);
    }

    public string? Get(string name)
    {
        _used.Add(name);
        return _values.TryGetValue(name, out var v) ? v : null;
    }

    public string Require(string name) => Get(name) ?? throw new ArgumentException($"--{name} is required");

    public long GetLong(string name, long fallback)
    {
        var v = Get(name);
        return v is null ? fallback : long.Parse(v, CultureInfo.InvariantCulture);
    }

    public double GetDouble(string name, double fallback)
    {
        var v = Get(name);
        return v is null ? fallback : double.Parse(v, CultureInfo.InvariantCulture);
    }

    /// <summary>Call after every Get: rejects options this command does not know.</summary>
    public void RejectUnknown()
    {
        var unknown = _values.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0) throw new ArgumentException($"unknown option(s): {string.Join(", ", unknown.Select(u => "--" + u))}");
    }
}
