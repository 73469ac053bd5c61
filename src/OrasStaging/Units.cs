using System.Globalization;

namespace OrasStaging;

/// <summary>Human-readable figures for progress text, Verbose lines and format views.</summary>
public static class Units
{
    private static readonly string[] Suffixes = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };

    /// <summary>1536 → "1.5 KiB". Binary units, because disk sizes are.</summary>
    public static string Bytes(long bytes)
    {
        if (bytes < 1024)
        {
            return bytes.ToString(CultureInfo.InvariantCulture) + " B";
        }

        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < Suffixes.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return value.ToString(value >= 100 ? "0" : value >= 10 ? "0.0" : "0.00", CultureInfo.InvariantCulture)
            + " " + Suffixes[unit];
    }

    /// <summary>"sha256:1a2b3c4d5e6f…" → "sha256:1a2b3c4d…" (eight hex digits), for tables.</summary>
    public static string ShortDigest(string? digest)
    {
        if (string.IsNullOrEmpty(digest))
        {
            return string.Empty;
        }

        int colon = digest.IndexOf(':');
        return colon >= 0 && digest.Length > colon + 9 ? digest[..(colon + 9)] + "…" : digest;
    }
}
