using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OrasStaging.TestKit;

/// <summary>
/// push-layout: any manifest or index shape the publishers use, from a JSON spec, so each test can build a fixture
/// exactly as a publisher's own tool would (KubeVirt containerDisks as docker v2 or OCI images with tar layers,
/// podman machine-os and CoreOS/Konflux indexes of one disk per type, KubeVirt VEP 256 disk artifacts).
/// <code>
/// { "manifests": [ { "mediaType": "oci"|"docker"|"&lt;full type&gt;", "artifactType": "…", "annotations": {…},
///                    "config": { "mediaType": "…", "json": "{…}" },      // default: an image config (docker/oci) or the empty descriptor
///                    "layers": [ { "mediaType": "…", "compression": "gzip"|"zstd"|"none", "annotations": {…},
///                                  "file": "/path" | "text": "…" | "tar": [ { "path": "disk/", "type": "dir"|"file"|"symlink",
///                                  "file": "/path" | "text": "…", "uid": 107, "gid": 107, "linkTarget": "…" } ], "tarFormat": "ustar"|"pax"|"gnu" } ] } ],
///   "index": { "mediaType": "oci"|"docker", "artifactType": "…", "annotations": {…},
///              "entries": [ { "manifest": 0, "platform": { "os": "linux", "architecture": "amd64" }, "annotations": {…}, "artifactType": "…" } ] } }
/// </code>
/// The tag names the index when there is one, else the last manifest. Prints the digests and sizes of everything pushed.
/// </summary>
public static partial class ArtifactPusher
{
    public const string DockerManifestMediaType = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerListMediaType = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerConfigMediaType = "application/vnd.docker.container.image.v1+json";
    public const string OciConfigMediaType = "application/vnd.oci.image.config.v1+json";

    public static async Task<JsonObject> PushLayoutAsync(PushOptions options, string specPath, CancellationToken cancellationToken = default)
    {
        var spec = JsonNode.Parse(await File.ReadAllTextAsync(specPath, cancellationToken).ConfigureAwait(false))!.AsObject();
        using var client = new RegistryClient(options.Registry, options.Tls, options.CaCertPath, options.Username, options.Password);
        var session = new Session(client, options.Repository);
        var work = Directory.CreateTempSubdirectory("orasstaging-layout-");
        try
        {
            var pushedManifests = new JsonArray();
            var manifests = spec["manifests"]!.AsArray();
            bool hasIndex = spec["index"] is JsonObject;
            for (int i = 0; i < manifests.Count; i++)
            {
                var m = manifests[i]!.AsObject();
                string? tag = !hasIndex && i == manifests.Count - 1 ? options.Tag : null;
                pushedManifests.Add(await PushLayoutManifestAsync(session, m, Path.Combine(work.FullName, i.ToString(System.Globalization.CultureInfo.InvariantCulture)), tag, cancellationToken).ConfigureAwait(false));
            }

            var result = new JsonObject
            {
                ["reference"] = $"{options.Registry}/{options.Repository}:{options.Tag}",
                ["repository"] = options.Repository,
                ["tag"] = options.Tag,
                ["manifests"] = pushedManifests,
            };
            if (spec["index"] is JsonObject index)
            {
                string mediaType = Full(index["mediaType"]?.GetValue<string>() ?? "oci", index: true);
                var body = Json(w =>
                {
                    w.WriteNumber("schemaVersion", 2);
                    w.WriteString("mediaType", mediaType);
                    if (index["artifactType"]?.GetValue<string>() is { } indexArtifactType) w.WriteString("artifactType", indexArtifactType);
                    w.WriteStartArray("manifests");
                    foreach (var e in index["entries"]!.AsArray())
                    {
                        var entry = e!.AsObject();
                        var pushed = pushedManifests[entry["manifest"]!.GetValue<int>()]!.AsObject();
                        w.WriteStartObject();
                        w.WriteString("mediaType", pushed["mediaType"]!.GetValue<string>());
                        w.WriteString("digest", pushed["digest"]!.GetValue<string>());
                        w.WriteNumber("size", pushed["size"]!.GetValue<long>());
                        if (entry["artifactType"]?.GetValue<string>() is { } at) w.WriteString("artifactType", at);
                        if (entry["platform"] is JsonObject platform)
                        {
                            w.WritePropertyName("platform");
                            platform.WriteTo(w);
                        }
                        WriteAnnotations(w, entry["annotations"] as JsonObject);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    WriteAnnotations(w, index["annotations"] as JsonObject);
                });
                result["indexDigest"] = await session.PutManifestAsync(body, mediaType, options.Tag, cancellationToken).ConfigureAwait(false);
                result["indexMediaType"] = mediaType;
            }

            return result;
        }
        finally
        {
            try { work.Delete(recursive: true); } catch (IOException) { }
        }
    }

    private static string Full(string mediaType, bool index) => mediaType switch
    {
        "oci" => index ? IndexMediaType : ManifestMediaType,
        "docker" => index ? DockerListMediaType : DockerManifestMediaType,
        var full => full,
    };

    private static async Task<JsonObject> PushLayoutManifestAsync(Session session, JsonObject m, string work, string? tag, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(work);
        string mediaType = Full(m["mediaType"]?.GetValue<string>() ?? "oci", index: false);
        bool docker = mediaType == DockerManifestMediaType;
        var layers = new List<(string MediaType, string Digest, long Size, JsonObject? Annotations, string DiffId)>();
        var layerSpecs = m["layers"]?.AsArray() ?? new JsonArray();
        for (int i = 0; i < layerSpecs.Count; i++)
        {
            var l = layerSpecs[i]!.AsObject();
            string plain = Path.Combine(work, $"layer{i}");
            if (l["tar"] is JsonArray members)
            {
                WriteTar(plain, members, l["tarFormat"]?.GetValue<string>() ?? "ustar");
            }
            else if (l["file"]?.GetValue<string>() is { } file)
            {
                File.Copy(file, plain);
            }
            else
            {
                await File.WriteAllTextAsync(plain, l["text"]?.GetValue<string>() ?? string.Empty, cancellationToken).ConfigureAwait(false);
            }

            string diffId;
            await using (var f = File.OpenRead(plain))
            {
                diffId = "sha256:" + Convert.ToHexString(await SHA256.HashDataAsync(f, cancellationToken).ConfigureAwait(false)).ToLowerInvariant();
            }

            string compression = NormalizeCompression(l["compression"]?.GetValue<string>() ?? "none");
            string blob = plain;
            if (compression != "none")
            {
                blob = plain + ".c";
                await CompressAsync(plain, blob, compression, cancellationToken).ConfigureAwait(false);
            }

            var (digest, size) = await session.PushBlobFileAsync(blob, cancellationToken).ConfigureAwait(false);
            string layerType = l["mediaType"]?.GetValue<string>()
                ?? (docker ? "application/vnd.docker.image.rootfs.diff.tar" + (compression == "gzip" ? ".gzip" : compression == "zstd" ? ".zstd" : "")
                    : "application/vnd.oci.image.layer.v1.tar" + MediaTypeSuffix(compression));
            layers.Add((layerType, digest, size, l["annotations"] as JsonObject, diffId));
        }

        byte[] config;
        string configType;
        if (m["config"] is JsonObject c)
        {
            configType = c["mediaType"]!.GetValue<string>();
            config = Encoding.UTF8.GetBytes(c["json"]?.GetValue<string>() ?? "{}");
        }
        else if (m["artifactType"] is not null && !docker)
        {
            configType = EmptyMediaType;
            config = "{}"u8.ToArray();
        }
        else
        {
            // An image config as buildah and docker write it: the rootfs diff_ids are the uncompressed layer digests.
            configType = docker ? DockerConfigMediaType : OciConfigMediaType;
            config = Json(w =>
            {
                w.WriteString("created", Created);
                w.WriteString("architecture", "amd64");
                w.WriteString("os", "linux");
                w.WriteStartObject("config");
                w.WriteEndObject();
                w.WriteStartObject("rootfs");
                w.WriteString("type", "layers");
                w.WriteStartArray("diff_ids");
                foreach (var layer in layers) w.WriteStringValue(layer.DiffId);
                w.WriteEndArray();
                w.WriteEndObject();
            });
        }

        string configDigest = await session.PushBlobAsync(config, cancellationToken).ConfigureAwait(false);
        var body = Json(w =>
        {
            w.WriteNumber("schemaVersion", 2);
            w.WriteString("mediaType", mediaType);
            if (m["artifactType"]?.GetValue<string>() is { } at) w.WriteString("artifactType", at);
            w.WriteStartObject("config");
            w.WriteString("mediaType", configType);
            w.WriteString("digest", configDigest);
            w.WriteNumber("size", config.Length);
            w.WriteEndObject();
            w.WriteStartArray("layers");
            foreach (var layer in layers)
            {
                w.WriteStartObject();
                w.WriteString("mediaType", layer.MediaType);
                w.WriteString("digest", layer.Digest);
                w.WriteNumber("size", layer.Size);
                WriteAnnotations(w, layer.Annotations);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            WriteAnnotations(w, m["annotations"] as JsonObject);
        });
        string manifestDigest = await session.PutManifestAsync(body, mediaType, tag, cancellationToken).ConfigureAwait(false);
        var pushedLayers = new JsonArray();
        foreach (var layer in layers)
        {
            pushedLayers.Add(new JsonObject { ["mediaType"] = layer.MediaType, ["digest"] = layer.Digest, ["size"] = layer.Size, ["diffId"] = layer.DiffId });
        }

        return new JsonObject { ["mediaType"] = mediaType, ["digest"] = manifestDigest, ["size"] = (long)body.Length, ["configDigest"] = configDigest, ["layers"] = pushedLayers };
    }

    private static void WriteAnnotations(Utf8JsonWriter w, JsonObject? annotations)
    {
        if (annotations is null || annotations.Count == 0) return;
        w.WriteStartObject("annotations");
        foreach (var (key, value) in annotations) w.WriteString(key, value!.GetValue<string>());
        w.WriteEndObject();
    }

    /// <summary>A layer tar: members in the order given, owners as given (KubeVirt wants 107:107 on disk/).</summary>
    private static void WriteTar(string path, JsonArray members, string format)
    {
        var tarFormat = format switch { "pax" => TarEntryFormat.Pax, "gnu" => TarEntryFormat.Gnu, _ => TarEntryFormat.Ustar };
        using var output = File.Create(path);
        using var tar = new TarWriter(output, tarFormat, leaveOpen: false);
        var mtime = DateTimeOffset.Parse(Created, System.Globalization.CultureInfo.InvariantCulture);
        foreach (var node in members)
        {
            var e = node!.AsObject();
            string name = e["path"]!.GetValue<string>();
            string kind = e["type"]?.GetValue<string>() ?? (name.EndsWith('/') ? "dir" : "file");
            var type = kind switch { "dir" => TarEntryType.Directory, "symlink" => TarEntryType.SymbolicLink, _ => TarEntryType.RegularFile };
            TarEntry entry = tarFormat switch
            {
                TarEntryFormat.Pax => new PaxTarEntry(type, name),
                TarEntryFormat.Gnu => new GnuTarEntry(type, name),
                _ => new UstarTarEntry(type, name),
            };
            entry.ModificationTime = mtime;
            entry.Uid = e["uid"]?.GetValue<int>() ?? 0;
            entry.Gid = e["gid"]?.GetValue<int>() ?? 0;
            entry.Mode = kind == "dir" ? (UnixFileMode)0b111_101_101 : (UnixFileMode)0b110_100_100;
            if (kind == "symlink") entry.LinkName = e["linkTarget"]!.GetValue<string>();
            FileStream? data = null;
            if (kind == "file")
            {
                if (e["file"]?.GetValue<string>() is { } file)
                {
                    data = File.OpenRead(file);
                    entry.DataStream = data;
                }
                else
                {
                    entry.DataStream = new MemoryStream(Encoding.UTF8.GetBytes(e["text"]?.GetValue<string>() ?? string.Empty));
                }
            }
            tar.WriteEntry(entry);
            data?.Dispose();
        }
    }
}
