using OrasStaging.DiskImages;

namespace OrasStaging.Staging;

/// <summary>What the staging flow needs to know about the resolved artifact; mapped from the OCI client's result.</summary>
internal sealed record ResolvedLayer
{
    public required string Reference { get; init; }

    public required string Registry { get; init; }

    public required string Repository { get; init; }

    public string? Tag { get; init; }

    public string? ManifestDigest { get; init; }

    /// <summary>The layer blob's digest.</summary>
    public required string Digest { get; init; }

    public long Size { get; init; }

    public string? MediaType { get; init; }

    public string? Title { get; init; }

    /// <summary>
    /// The uncompressed image size when the artifact declares it (the nosi layer's org.nosi.image.size; a
    /// convention may set it from its own metadata): the free-space check uses it, and the decoder may not pass it.
    /// </summary>
    public long? DeclaredImageSize { get; init; }

    /// <summary>The publisher's convention (OrasImage.Convention), for the receipt.</summary>
    public string? Convention { get; init; }

    /// <summary>containerDisk: the disk's path inside the layer's tar, which the writer takes and the receipt records.</summary>
    public string? MemberPath { get; init; }

    /// <summary>Where the blob's bytes came from (set once it was read): "mirror host/repo", "origin …", "kept blob …".</summary>
    public string? BlobSource { get; init; }
}

/// <summary>Where the flow gets the artifact from: the registry in production, a fake in unit tests.</summary>
internal interface IStagingSource
{
    Task<ResolvedLayer> ResolveAsync(CancellationToken cancellationToken);

    /// <summary>
    /// The whole blob, forward only. It must throw <see cref="OrasStagingException"/> (DigestMismatch) from Read
    /// when the bytes seen do not match the digest, at the latest when Read reaches the end.
    /// </summary>
    Task<Stream> OpenBlobAsync(ResolvedLayer layer, CancellationToken cancellationToken);

    /// <summary>After the blob was read: the sources that delivered its bytes, in order (a mirror, then the origin…).</summary>
    IReadOnlyList<string> BlobSources => Array.Empty<string>();
}

/// <summary>What the disk writer reports about the file it wrote.</summary>
internal sealed record WrittenImage(DiskImageFormat Format, long VirtualSize, long FileSize, long InputBytes);

/// <summary>Decodes the (compressed) blob stream and writes a new image file: DiskImageWriter in production.</summary>
internal interface IStagingWriter
{
    /// <summary>The format that will be written, for messages and the result of a skip.</summary>
    DiskImageFormat Format { get; }

    /// <summary>
    /// The decoded size the artifact declares (<see cref="ResolvedLayer.DeclaredImageSize"/>), set before the write:
    /// decoding past it fails at once with CorruptInput. Null: only -Size and the free space bound the output.
    /// </summary>
    long? DeclaredDecodedBytes { get; set; }

    /// <summary>
    /// Set before the write: the output path is a partial a killed run of the same image left, to be opened and
    /// written only where it differs rather than created (file targets; ignored by others).
    /// </summary>
    bool ReuseOutput { get; set; }

    Task<WrittenImage> WriteAsync(Stream input, long? inputLength, string outputPath, IOperationSink sink,
        CancellationToken cancellationToken);
}

/// <summary>One image to stage.</summary>
internal sealed record InstallRequest
{
    public string Name { get; init; } = string.Empty;

    public required string Reference { get; init; }

    /// <summary>The digest the reference pins (manifest or blob; not known which before resolving), or null.</summary>
    public string? PinnedDigest { get; init; }

    /// <summary>The full path of the image file.</summary>
    public required string Path { get; init; }

    public bool Force { get; init; }

    /// <summary>A folder where verified blobs are kept by digest and reused, or null.</summary>
    public string? KeepBlob { get; init; }

    public TimeSpan LockTimeout { get; init; } = TimeSpan.FromMinutes(30);
}
