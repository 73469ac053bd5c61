using System.Text.Json;
using OrasStaging.IO;
using DigestRules = OrasStaging.Oci.Digest;

namespace OrasStaging.Staging;

/// <summary>
/// The compressed bytes an install has received so far, kept so a killed run resumes instead of starting from
/// byte 0 (issue 12): <c>&lt;image&gt;.blob.partial</c> beside the target, or <c>&lt;folder&gt;/&lt;alg&gt;/&lt;hex&gt;.partial</c>
/// in the -KeepBlob folder (where it becomes the kept blob once verified). Beside it, <c>.json</c> says what the bytes
/// are: the digest and size being fetched, the registry and repository they came from, and the offset up to which
/// they were on the file when the record was last written. Only used under the target's lock.
/// </summary>
internal sealed class ResumePrefix
{
    public const string BesideSuffix = ".blob" + PartialFile.Suffix;
    public const string RecordSuffix = ".json";

    private ResumePrefix(string path, string? keptAs)
    {
        Path = path;
        KeptAs = keptAs;
    }

    /// <summary>The prefix file.</summary>
    public string Path { get; }

    public string RecordPath => Path + RecordSuffix;

    /// <summary>With -KeepBlob: the kept blob's name, which the verified prefix takes at the end.</summary>
    public string? KeptAs { get; }

    /// <summary>
    /// The file name of the image partial this run writes beside the target, kept in the record so that, after a
    /// kill, the next run finds it and writes only what differs (<see cref="DiskImages.ImageFile"/>).
    /// </summary>
    public string? ImagePartial { get; set; }

    public static ResumePrefix For(string imagePath, BlobCache? cache, ResolvedLayer layer)
    {
        if (cache is null)
        {
            return new ResumePrefix(imagePath + BesideSuffix, null);
        }

        string kept = cache.PathFor(layer.Digest);
        return new ResumePrefix(kept + PartialFile.Suffix, kept);
    }

    /// <summary>
    /// Under the lock, before the write: a prefix beside the target (and the one in the -KeepBlob folder) that is not
    /// of <paramref name="layer"/> — another digest or size, no readable record — is stale and removed; with
    /// <paramref name="force"/> (trust nothing on disk) every prefix is.
    /// </summary>
    public static void Sweep(string imagePath, BlobCache? cache, ResolvedLayer layer, bool force, IOperationSink sink)
    {
        var candidates = new List<ResumePrefix> { new(imagePath + BesideSuffix, null) };
        if (cache is not null)
        {
            candidates.Add(For(imagePath, cache, layer));
        }

        foreach (var prefix in candidates)
        {
            if (!File.Exists(prefix.Path) && !File.Exists(prefix.RecordPath))
            {
                continue;
            }

            var record = prefix.ReadRecord();
            string? why = force ? "-Force trusts nothing on disk"
                : record is null ? "it has no readable record"
                : !DigestRules.AreEqual(record.Digest, layer.Digest) || record.Size != layer.Size ? $"it is of {record.Digest}, not {layer.Digest}"
                : null;
            if (why is not null)
            {
                sink.Verbose($"Removing the kept download '{prefix.Path}': {why}.");
                prefix.Delete();
            }
        }
    }

    /// <summary>
    /// How many bytes of <paramref name="layer"/> this prefix holds that a run would reuse rather than download:
    /// its record names the same digest and size, and the file has them (the record's offset is the watermark).
    /// </summary>
    public long ReusableBytes(ResolvedLayer layer, long? fileLength = null)
    {
        long length = fileLength ?? (File.Exists(Path) ? new FileInfo(Path).Length : 0);
        if (length <= 0 || ReadRecord() is not { } record
            || !DigestRules.AreEqual(record.Digest, layer.Digest) || record.Size != layer.Size)
        {
            return 0;
        }

        return Math.Max(0, Math.Min(record.Offset, Math.Min(length, layer.Size)));
    }

    /// <summary>
    /// The image partial a killed run of <paramref name="layer"/> left beside <paramref name="imagePath"/>, named by this
    /// prefix's record, when the prefix is reused (otherwise the run starts over and so does the image); else null.
    /// Only a name of the target's own partials is taken, so a record never points a run at another file.
    /// </summary>
    public string? KilledRunImage(string imagePath, ResolvedLayer layer)
    {
        if (ReusableBytes(layer) == 0 || ReadRecord() is not { Image: { } name } || name != System.IO.Path.GetFileName(name))
        {
            return null;
        }

        string path = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(imagePath)!, name);
        return PartialFile.IsRandomPartialOf(imagePath, path) && File.Exists(path) ? path : null;
    }

    public ResumeRecord? ReadRecord()
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(RecordPath));
            var root = doc.RootElement;
            return new ResumeRecord(root.GetProperty("digest").GetString() ?? string.Empty, root.GetProperty("size").GetInt64(),
                root.GetProperty("registry").GetString() ?? string.Empty, root.GetProperty("repository").GetString() ?? string.Empty,
                root.GetProperty("offset").GetInt64(),
                root.TryGetProperty("image", out var image) && image.ValueKind == JsonValueKind.String ? image.GetString() : null);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    /// <summary>Temp file renamed over the record: a kill leaves the old record or the new one.</summary>
    public void WriteRecord(ResolvedLayer layer, long offset)
    {
        string temp = RecordPath + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 4096))
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("digest", layer.Digest);
            json.WriteNumber("size", layer.Size);
            json.WriteString("registry", layer.Registry);
            json.WriteString("repository", layer.Repository);
            json.WriteNumber("offset", offset);
            if (ImagePartial is not null)
            {
                json.WriteString("image", ImagePartial);
            }

            json.WriteEndObject();
        }

        File.Move(temp, RecordPath, overwrite: true);
    }

    public void Delete()
    {
        PartialFile.TryDelete(Path);
        PartialFile.TryDelete(RecordPath);
        PartialFile.TryDelete(RecordPath + ".tmp");
    }
}

/// <summary>
/// What a prefix's record says: which blob, from where, how many of its bytes are on the file, and the image partial
/// the run that wrote it was writing (null in records without one).
/// </summary>
internal sealed record ResumeRecord(string Digest, long Size, string Registry, string Repository, long Offset, string? Image = null);
