using System.IO.Compression;
using SharpCompress.Compressors;
using SharpCompress.Compressors.BZip2;
using SharpCompress.Compressors.Xz;
using ZstdSharp;

namespace OrasStaging.Compression;

/// <summary>
/// Opens the decoder for a detected <see cref="CompressionKind"/>. gzip uses the runtime's zlib-ng backed
/// GZipStream (multi-member on .NET Core 3.0+); zstd uses ZstdSharp.Port (managed, vectorised, decodes
/// concatenated and skippable frames); xz and bzip2 use SharpCompress, the maintained managed library that
/// decodes both (checked to the byte against the xz and bzip2 CLIs).
/// </summary>
internal static class Decoders
{
    public static Stream Open(CompressionKind kind, Stream compressed) => kind switch
    {
        CompressionKind.None => compressed,
        CompressionKind.Gzip => new TruncationCheckedGZipStream(compressed),
        CompressionKind.Zstd => new DecompressionStream(compressed, bufferSize: 1 << 20, checkEndOfStream: true, leaveOpen: true),
        CompressionKind.Xz => new XZStream(compressed),
        CompressionKind.Bzip2 => BZip2Stream.Create(compressed, SharpCompress.Compressors.CompressionMode.Decompress, decompressConcatenated: true, leaveOpen: true),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };
}
