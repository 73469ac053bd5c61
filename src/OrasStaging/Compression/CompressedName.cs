namespace OrasStaging.Compression;

/// <summary>
/// The name of what a compressed file holds: its own name without the compression extension. Only names are
/// read here; which decoder runs is told by the magic bytes (<see cref="CompressionDetector"/>), never by this.
/// </summary>
internal static class CompressedName
{
    /// <summary>The extensions taken off, matched case-insensitively.</summary>
    internal static readonly string[] Extensions = { ".gz", ".zst", ".zstd", ".xz", ".bz2" };

    /// <summary>
    /// The output file name for the compressed file <paramref name="fileName"/>: <c>disk.img.gz</c> gives
    /// <c>disk.img</c>. Fails with <see cref="ErrorCode.InvalidArgument"/> when no name is left to give.
    /// </summary>
    public static string OutputName(string fileName) =>
        Strip(fileName) ?? throw new OrasStagingException(ErrorCode.InvalidArgument,
            $"Cannot derive an output name from '{fileName}': it does not end in .gz, .zst, .xz or .bz2.",
            "Give -DestinationPath.");

    /// <summary>The name without its compression extension; null when it has none, or nothing precedes it.</summary>
    public static string? Strip(string fileName)
    {
        string? ext = Extensions.FirstOrDefault(e => fileName.EndsWith(e, StringComparison.OrdinalIgnoreCase));
        string? stripped = ext is null ? null : fileName[..^ext.Length];
        return string.IsNullOrEmpty(stripped) ? null : stripped;
    }
}
