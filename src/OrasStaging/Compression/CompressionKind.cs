namespace OrasStaging.Compression;

/// <summary>How a stream is compressed, as told by its first bytes (never by its file name).</summary>
public enum CompressionKind
{
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}
