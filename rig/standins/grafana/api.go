package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

const version = "12.3.0"

type app struct {
	store       *store
	datasources []datasource
	providers   []provider
	client      *http.Client
	anonymous   bool // GF_AUTH_ANONYMOUS_ENABLED: reads without credentials
	now         func() time.Time
	logf        func(format string, args ...any)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func message(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"message": msg})
}

// auth wraps an API handler with Grafana's basic authentication against the
// admin user stored in the database.
func (a *app) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok {
			if a.anonymous && r.Method == http.MethodGet {
				h(w, r)
				return
			}
			message(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		s, err := a.store.read()
		if err != nil {
			message(w, http.StatusInternalServerError, "database: "+err.Error())
			return
		}
		if !s.Admin.check(user, pass) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Invalid username or password", "messageId": "password-auth.failed", "statusCode": 401, "traceID": ""})
			return
		}
		h(w, r)
	}
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", a.health)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "Ok") })
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# HELP grafana_build_info A metric with a constant '1' value labeled by version, revision, branch, and goversion from which Grafana was built\n# TYPE grafana_build_info gauge\ngrafana_build_info{branch=\"HEAD\",edition=\"oss\",revision=\"standin\",version=%q} 1\n", version)
	})
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!DOCTYPE html><html><head><title>Grafana</title></head><body>Grafana (monagent rig stand-in)</body></html>")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/login", http.StatusFound) })

	mux.HandleFunc("GET /api/datasources", a.auth(a.listDatasources))
	mux.HandleFunc("GET /api/datasources/{id}", a.auth(a.getDatasource))
	mux.HandleFunc("GET /api/datasources/uid/{uid}", a.auth(a.getDatasource))
	mux.HandleFunc("GET /api/datasources/name/{name}", a.auth(a.getDatasource))
	mux.HandleFunc("GET /api/datasources/uid/{uid}/health", a.auth(a.datasourceHealth))

	mux.HandleFunc("GET /api/search", a.auth(a.search))
	mux.HandleFunc("GET /api/dashboards/uid/{uid}", a.auth(a.getDashboard))
	mux.HandleFunc("DELETE /api/dashboards/uid/{uid}", a.auth(a.deleteDashboard))
	mux.HandleFunc("POST /api/dashboards/db", a.auth(a.saveDashboard))
	mux.HandleFunc("GET /api/folders", a.auth(a.listFolders))
	mux.HandleFunc("GET /api/org", a.auth(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"id": 1, "name": "Main Org.", "address": map[string]string{}})
	}))
	mux.HandleFunc("GET /api/user", a.auth(func(w http.ResponseWriter, r *http.Request) {
		s, err := a.store.read()
		if err != nil {
			message(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": 1, "login": s.Admin.Login, "isGrafanaAdmin": true, "orgId": 1})
	}))
	return mux
}

func (a *app) health(w http.ResponseWriter, r *http.Request) {
	dbState := "ok"
	code := http.StatusOK
	if _, err := a.store.read(); err != nil {
		dbState, code = "failing", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]string{"commit": "standin", "database": dbState, "version": version})
}

func (a *app) findDatasource(r *http.Request) *datasource {
	uid, name, id := r.PathValue("uid"), r.PathValue("name"), r.PathValue("id")
	for i := range a.datasources {
		d := &a.datasources[i]
		switch {
		case uid != "" && d.UID == uid, name != "" && d.Name == name, id != "" && strconv.FormatInt(d.ID, 10) == id:
			return d
		}
	}
	return nil
}

func (a *app) listDatasources(w http.ResponseWriter, r *http.Request) {
	out := a.datasources
	if out == nil {
		out = []datasource{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *app) getDatasource(w http.ResponseWriter, r *http.Request) {
	if d := a.findDatasource(r); d != nil {
		writeJSON(w, http.StatusOK, d)
		return
	}
	message(w, http.StatusNotFound, "Data source not found")
}

func (a *app) datasourceHealth(w http.ResponseWriter, r *http.Request) {
	d := a.findDatasource(r)
	if d == nil {
		message(w, http.StatusNotFound, "Data source not found")
		return
	}
	status, msg := checkHealth(r.Context(), a.client, *d)
	code := http.StatusOK
	if status != "OK" {
		code = http.StatusBadRequest
	}
	writeJSON(w, code, map[string]string{"status": status, "message": msg})
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

func slugify(title string) string {
	return strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(title), "-"), "-")
}

// synced returns the database after syncing the provisioned dashboards.
func (a *app) synced() (*dbState, error) {
	if err := a.store.update(func(s *dbState) error {
		return syncDashboards(s, a.providers, a.now(), a.logf)
	}, false); err != nil {
		return nil, err
	}
	return a.store.read()
}

type hit struct {
	ID          int64    `json:"id"`
	UID         string   `json:"uid"`
	OrgID       int64    `json:"orgId"`
	Title       string   `json:"title"`
	URI         string   `json:"uri"`
	URL         string   `json:"url"`
	Slug        string   `json:"slug"`
	Type        string   `json:"type"`
	Tags        []string `json:"tags"`
	IsStarred   bool     `json:"isStarred"`
	SortMeta    int      `json:"sortMeta"`
	IsDeleted   bool     `json:"isDeleted"`
	FolderID    int64    `json:"folderId,omitempty"`
	FolderUID   string   `json:"folderUid,omitempty"`
	FolderTitle string   `json:"folderTitle,omitempty"`
	FolderURL   string   `json:"folderUrl,omitempty"`
}

// search answers /api/search: query (title substring, case-insensitive),
// type (dash-db or dash-folder), tag (all must match), dashboardUIDs, limit.
func (a *app) search(w http.ResponseWriter, r *http.Request) {
	s, err := a.synced()
	if err != nil {
		message(w, http.StatusInternalServerError, err.Error())
		return
	}
	q := r.URL.Query()
	query := strings.ToLower(q.Get("query"))
	typ := q.Get("type")
	tags := q["tag"]
	uids := map[string]bool{}
	for _, u := range q["dashboardUIDs"] {
		for _, x := range strings.Split(u, ",") {
			uids[x] = true
		}
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 {
		limit = 1000
	}
	out := []hit{}
	if typ == "" || typ == "dash-folder" {
		for _, f := range s.Folders {
			if (query == "" || strings.Contains(strings.ToLower(f.Title), query)) && len(tags) == 0 && len(uids) == 0 {
				slug := slugify(f.Title)
				out = append(out, hit{ID: f.ID, UID: f.UID, OrgID: 1, Title: f.Title, URI: "db/" + slug, URL: "/dashboards/f/" + f.UID + "/" + slug, Type: "dash-folder", Tags: []string{}})
			}
		}
	}
	if typ == "" || typ == "dash-db" {
		for _, d := range s.Dashboards {
			if query != "" && !strings.Contains(strings.ToLower(d.Title), query) {
				continue
			}
			if len(uids) > 0 && !uids[d.UID] {
				continue
			}
			if !hasAll(d.Tags, tags) {
				continue
			}
			slug := slugify(d.Title)
			h := hit{ID: d.ID, UID: d.UID, OrgID: 1, Title: d.Title, URI: "db/" + slug, URL: "/d/" + d.UID + "/" + slug, Type: "dash-db", Tags: d.Tags}
			if h.Tags == nil {
				h.Tags = []string{}
			}
			if f := s.folderByUID(d.FolderUID); f != nil {
				h.FolderID, h.FolderUID, h.FolderTitle = f.ID, f.UID, f.Title
				h.FolderURL = "/dashboards/f/" + f.UID + "/" + slugify(f.Title)
			}
			out = append(out, h)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Type == "dash-folder") != (out[j].Type == "dash-folder") {
			return out[i].Type == "dash-folder"
		}
		return strings.ToLower(out[i].Title) < strings.ToLower(out[j].Title)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	writeJSON(w, http.StatusOK, out)
}

func hasAll(have, want []string) bool {
	for _, t := range want {
		found := false
		for _, h := range have {
			if h == t {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (a *app) listFolders(w http.ResponseWriter, r *http.Request) {
	s, err := a.synced()
	if err != nil {
		message(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := []map[string]any{}
	for _, f := range s.Folders {
		out = append(out, map[string]any{"id": f.ID, "uid": f.UID, "title": f.Title})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *app) getDashboard(w http.ResponseWriter, r *http.Request) {
	s, err := a.synced()
	if err != nil {
		message(w, http.StatusInternalServerError, err.Error())
		return
	}
	d := s.dashboardByUID(r.PathValue("uid"))
	if d == nil {
		message(w, http.StatusNotFound, "Dashboard not found")
		return
	}
	slug := slugify(d.Title)
	meta := map[string]any{
		"type": "db", "slug": slug, "url": "/d/" + d.UID + "/" + slug, "version": d.Version,
		"created": d.Created, "updated": d.Updated, "provisioned": d.Provisioned, "canSave": !d.Provisioned,
		"folderUid": d.FolderUID, "provisionedExternalId": "",
	}
	if d.Provisioned {
		meta["provisionedExternalId"] = d.Path
	}
	writeJSON(w, http.StatusOK, map[string]any{"dashboard": d.Data, "meta": meta})
}

func (a *app) deleteDashboard(w http.ResponseWriter, r *http.Request) {
	uid := r.PathValue("uid")
	var gone *dashboard
	err := a.store.update(func(s *dbState) error {
		d := s.dashboardByUID(uid)
		if d == nil {
			return errNotFound
		}
		if d.Provisioned {
			return errProvisionedDelete
		}
		gone = d
		s.removeDashboard(uid)
		return nil
	}, false)
	switch {
	case errors.Is(err, errNotFound):
		message(w, http.StatusNotFound, "Dashboard not found")
	case errors.Is(err, errProvisionedDelete):
		message(w, http.StatusBadRequest, "provisioned dashboard cannot be deleted")
	case err != nil:
		message(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]any{"title": gone.Title, "message": fmt.Sprintf("Dashboard %s deleted", gone.Title), "id": gone.ID})
	}
}

var (
	errNotFound          = errors.New("not found")
	errProvisionedDelete = errors.New("provisioned")
)

type apiError struct {
	code   int
	status string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// saveDashboard implements POST /api/dashboards/db with Grafana's rules: a
// title is required; a provisioned dashboard cannot be saved; without
// overwrite, saving over an existing uid needs the current version, and a
// new dashboard may not take the title of another one in the same folder.
func (a *app) saveDashboard(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Dashboard map[string]any `json:"dashboard"`
		FolderUID string         `json:"folderUid"`
		Overwrite bool           `json:"overwrite"`
		Message   string         `json:"message"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 32<<20)).Decode(&body); err != nil {
		message(w, http.StatusBadRequest, "bad request data: "+err.Error())
		return
	}
	if body.Dashboard == nil {
		message(w, http.StatusBadRequest, "bad request data: dashboard is missing")
		return
	}
	title, _ := body.Dashboard["title"].(string)
	if strings.TrimSpace(title) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "Dashboard title cannot be empty", "status": "empty-name"})
		return
	}
	uid, _ := body.Dashboard["uid"].(string)
	if len(uid) > 40 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "uid too long, max 40 characters", "status": "bad-request"})
		return
	}
	var ver int64
	if v, ok := body.Dashboard["version"].(float64); ok {
		ver = int64(v)
	}
	var saved *dashboard
	err := a.store.update(func(s *dbState) error {
		if err := syncDashboards(s, a.providers, a.now(), a.logf); err != nil {
			return err
		}
		if body.FolderUID != "" && s.folderByUID(body.FolderUID) == nil {
			return &apiError{http.StatusBadRequest, "", "folder not found"}
		}
		existing := (*dashboard)(nil)
		if uid != "" {
			existing = s.dashboardByUID(uid)
		}
		for _, d := range s.Dashboards {
			if d != existing && d.FolderUID == body.FolderUID && strings.EqualFold(d.Title, title) {
				if !body.Overwrite {
					return &apiError{http.StatusPreconditionFailed, "name-exists", "A dashboard with the same name in the folder already exists"}
				}
				if existing == nil { // overwrite takes over the namesake
					existing, uid = d, d.UID
				}
			}
		}
		if existing != nil && existing.Provisioned {
			return &apiError{http.StatusBadRequest, "", "Cannot save provisioned dashboard"}
		}
		if existing != nil && !body.Overwrite && existing.Version != ver {
			return &apiError{http.StatusPreconditionFailed, "version-mismatch", "The dashboard has been changed by someone else"}
		}
		now := a.now().UTC()
		if existing == nil {
			if uid == "" {
				uid = randomString(14)
			}
			existing = &dashboard{ID: s.allocID(), UID: uid, Created: now}
			s.Dashboards = append(s.Dashboards, existing)
		}
		existing.Title, existing.Tags, existing.FolderUID = title, stringList(body.Dashboard["tags"]), body.FolderUID
		existing.Version++
		existing.Updated = now
		body.Dashboard["id"] = existing.ID
		body.Dashboard["uid"] = existing.UID
		body.Dashboard["version"] = existing.Version
		raw, err := json.Marshal(body.Dashboard)
		if err != nil {
			return err
		}
		existing.Data = raw
		cp := *existing
		saved = &cp
		return nil
	}, false)
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		m := map[string]string{"message": ae.msg}
		if ae.status != "" {
			m["status"] = ae.status
		}
		writeJSON(w, ae.code, m)
	case err != nil:
		message(w, http.StatusInternalServerError, err.Error())
	default:
		slug := slugify(saved.Title)
		a.logf("dashboard saved: uid=%s title=%q version=%d", saved.UID, saved.Title, saved.Version)
		writeJSON(w, http.StatusOK, map[string]any{"id": saved.ID, "uid": saved.UID, "url": "/d/" + saved.UID + "/" + slug, "status": "success", "version": saved.Version, "slug": slug, "folderUid": saved.FolderUID})
	}
}
